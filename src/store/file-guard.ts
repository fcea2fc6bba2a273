// Noticing that a local store file went away under the server: SQLite keeps writing to a deleted
// (unlinked) file through its open descriptor, so every later write would "succeed" into a file
// nobody can open again. The guard compares the path's device and inode with those at open time.

import { accessSync, constants, statSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

/** A store write that failed for a reason other than the data (I/O, read-only, disk full, deleted file). */
export class StorageFaultError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StorageFaultError";
  }
}

/** The local file behind a `file:` store URL, or null for :memory: and remote stores. */
export function storeFilePath(url: string): string | null {
  if (!url.startsWith("file:")) return null;
  const bare = url.split("?")[0];
  if (bare.startsWith("file://")) return fileURLToPath(bare);
  const path = bare.slice("file:".length);
  return path === "" || path === ":memory:" ? null : path;
}

/**
 * Throws StorageFaultError when this process could not write the store at `path`: the file (or,
 * before it exists, its directory) is read-only for this user or on a read-only filesystem. A
 * server checks this before opening its store: SQLite opens a write-protected file read-only
 * without complaint, and every later write would fail.
 */
export function assertWritable(path: string): void {
  try {
    accessSync(path, constants.W_OK);
    return;
  } catch (err) {
    if (errorCode(err) !== "ENOENT") throw notWritable(`the store file ${path}`, err);
  }
  try {
    accessSync(dirname(path), constants.W_OK);
  } catch (err) {
    throw notWritable(`the directory ${dirname(path)} of the store file`, err);
  }
}

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? "error";
}

function notWritable(what: string, err: unknown): StorageFaultError {
  const code = errorCode(err);
  const why =
    code === "EROFS"
      ? "is on a read-only filesystem"
      : code === "ENOENT"
        ? "does not exist"
        : "is not writable by this process";
  return new StorageFaultError(
    `${what} ${why} (${code}): no call could be recorded; make it writable or use another store`,
    {
      cause: err,
    },
  );
}

/**
 * Returns a check that throws StorageFaultError once the file at `path` is deleted or replaced
 * by another file; call it after the store is open.
 */
export function fileGuard(path: string): () => void {
  const opened = statSync(path);
  return () => {
    let now: ReturnType<typeof statSync>;
    try {
      now = statSync(path);
    } catch {
      throw new StorageFaultError(`the store file ${path} was deleted while the server was running`);
    }
    if (now.ino !== opened.ino || now.dev !== opened.dev) {
      throw new StorageFaultError(`the store file ${path} was replaced by another file while the server was running`);
    }
  };
}
