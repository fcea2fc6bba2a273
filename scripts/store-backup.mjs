#!/usr/bin/env node
// A consistent copy of a store while it is in use, as one ordinary SQLite file that
// `openStore("file:OUT")` (or `--store file:OUT`) opens directly. SOURCE is a local store file, or
// a libSQL server's data directory (sqld's --db-path, on the machine sqld runs on). The copy is
// `VACUUM INTO` on a second connection to the database file: a reader, so sqld and other writers
// carry on, and the copy is one point in time.
//   node scripts/store-backup.mjs /var/lib/fulgur/store.sqld store-backup.db
//   node scripts/store-backup.mjs fulgur.db store-backup.db
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { createClient } from "@libsql/client";

const [source, out] = process.argv.slice(2);
const fail = (message) => {
  console.error(`store-backup: ${message}`);
  process.exit(2);
};
if (!source || !out)
  fail("usage: node scripts/store-backup.mjs SOURCE OUT.db (SOURCE: a store file or sqld's --db-path)");
if (!existsSync(source)) fail(`${source} does not exist`);
if (existsSync(out)) fail(`${out} exists; pick a new name`);
// sqld keeps the default database at <db-path>/dbs/default/data.
const file = statSync(source).isDirectory() ? join(source, "dbs", "default", "data") : source;
if (!existsSync(file)) fail(`${source} is a directory without dbs/default/data: not a sqld --db-path`);
const client = createClient({ url: `file:${resolve(file)}` });
try {
  await client.execute({ sql: "VACUUM INTO ?", args: [resolve(out)] });
} catch (error) {
  fail(`copying ${file} failed: ${error.message}`);
} finally {
  client.close();
}
console.error(`store-backup: ${file} → ${out}`);
