#!/usr/bin/env node
// Keys and tokens for a libSQL server (sqld) that requires JWT auth, with Node built-ins only.
// sqld checks each request's token against an Ed25519 public key; the private key signs tokens.
//   node scripts/sqld-auth.mjs keygen DIR
//       writes DIR/sqld-jwt-private.pem (mode 600; keep it secret, it mints tokens) and
//       DIR/sqld-jwt-public.pem (give it to sqld: --auth-jwt-key-file DIR/sqld-jwt-public.pem);
//       refuses to overwrite an existing key
//   node scripts/sqld-auth.mjs token DIR [--days N]
//       prints a read-write token signed with DIR/sqld-jwt-private.pem, for FULGUR_STORE_TOKEN;
//       valid until the key is replaced, or for N days with --days N
import { createPrivateKey, generateKeyPairSync, sign } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [command, dir, ...rest] = process.argv.slice(2);
const usage = "usage: node scripts/sqld-auth.mjs keygen DIR | token DIR [--days N]";
const fail = (message) => {
  console.error(`sqld-auth: ${message}`);
  process.exit(2);
};
if (!dir || (command !== "keygen" && command !== "token")) fail(usage);
const privatePath = join(dir, "sqld-jwt-private.pem");
const publicPath = join(dir, "sqld-jwt-public.pem");

if (command === "keygen") {
  if (existsSync(privatePath) || existsSync(publicPath))
    fail(`${dir} already holds a key; remove it to make a new one`);
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  mkdirSync(dir, { recursive: true });
  writeFileSync(privatePath, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  writeFileSync(publicPath, publicKey.export({ type: "spki", format: "pem" }));
  console.error(`sqld-auth: wrote ${privatePath} (secret) and ${publicPath} (for sqld --auth-jwt-key-file)`);
} else {
  let days = null;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === "--days") {
      days = Number(rest[++i]);
      if (!(days > 0)) fail("--days takes a positive number");
    } else fail(`unknown option ${rest[i]}\n${usage}`);
  }
  if (!existsSync(privatePath)) fail(`no ${privatePath}: run keygen first`);
  const key = createPrivateKey(readFileSync(privatePath));
  const now = Math.floor(Date.now() / 1000);
  const claims = { a: "rw", iat: now, ...(days === null ? {} : { exp: now + Math.round(days * 86_400) }) };
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "EdDSA", typ: "JWT" })}.${part(claims)}`;
  process.stdout.write(`${body}.${sign(null, Buffer.from(body), key).toString("base64url")}\n`);
}
