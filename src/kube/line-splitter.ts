// Framing of a watch stream: newline-delimited JSON, split on bytes.

/**
 * Splits a byte stream into its non-empty lines ('\n'). A line, or a multi-byte character in it, may straddle
 * chunks: bytes are joined before they are decoded.
 */
export class LineSplitter {
  private readonly partial: Buffer[] = [];

  /** Calls onLine for each line completed by `chunk`; stops early when onLine returns false. */
  push(chunk: Buffer, onLine: (line: string) => boolean): void {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      let line: string;
      if (this.partial.length > 0) {
        this.partial.push(chunk.subarray(start, nl));
        line = Buffer.concat(this.partial).toString('utf8');
        this.partial.length = 0;
      } else {
        line = chunk.toString('utf8', start, nl);
      }
      start = nl + 1;
      if (line.length > 0 && !onLine(line)) return;
    }
    if (start < chunk.length) this.partial.push(chunk.subarray(start));
  }
}
