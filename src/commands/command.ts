// What one `fulgur` verb is: a one-line summary for `fulgur --help`, its usage, and its run.
export interface Command {
  summary: string;
  usage: string;
  /** Runs the verb with its arguments (after the verb) and resolves with the exit code. */
  run(argv: string[]): Promise<number>;
}
