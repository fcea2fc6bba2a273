// Progress for long work: a bar plus a live status line on a TTY, one JSON object per line
// otherwise (or when asked with --json), so people watch and programs parse the same events.

export interface ProgressOptions {
  json?: boolean;
  stream?: NodeJS.WriteStream;
}

export class Progress {
  private readonly json: boolean;
  private readonly stream: NodeJS.WriteStream;
  private live = false;

  constructor(options: ProgressOptions = {}) {
    this.stream = options.stream ?? process.stdout;
    this.json = options.json ?? !this.stream.isTTY;
  }

  /** A structured event: a JSON line, or (on a TTY) nothing unless `text` is given. */
  event(record: Record<string, unknown>, text?: string): void {
    if (this.json) {
      this.stream.write(`${JSON.stringify(record)}\n`);
      return;
    }
    if (text !== undefined) this.line(text);
  }

  /** A permanent line of text (TTY mode only). */
  line(text: string): void {
    if (this.json) return;
    this.clear();
    this.stream.write(`${text}\n`);
  }

  /** Redraws the live line: `[#####.....] 5/10 label`. */
  update(done: number, total: number, label: string): void {
    if (this.json) return;
    const width = 24;
    const filled = total > 0 ? Math.round((done / total) * width) : 0;
    const bar = `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
    const cols = this.stream.columns ?? 100;
    this.stream.write(`\r${`${bar} ${done}/${total} ${label}`.slice(0, cols - 1)}\x1b[K`);
    this.live = true;
  }

  /** Ends the live line. */
  clear(): void {
    if (this.live) {
      this.stream.write("\r\x1b[K");
      this.live = false;
    }
  }
}
