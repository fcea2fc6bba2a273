// Noticing that a local store file went away under the server: SQLite keeps writing to a deleted
// (unlinked) file through its open descriptor, so every later write would "succeed" into a file
// nobody can open again. The guard compares the path's device and inode with those at open time.

import { statSync } from "node:fs";
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
