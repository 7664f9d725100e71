// A progress bar on stderr: redrawn in place on a TTY, a few plain lines otherwise (logs, CI).

export interface ProgressBar {
  /** Reports `done` of `total` units for the current phase. */
  update(done: number, total: number, detail?: string): void;
  /** Ends the current phase with a final line. */
  finish(message: string): void;
  /** Prints a line without disturbing the bar. */
  log(message: string): void;
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** Force TTY or plain mode (default: stream.isTTY). */
  tty?: boolean;
  width?: number;
  /** How `done`/`total` are shown (default bytes). */
  unit?: "bytes" | "params";
}

function formatParams(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

export function createProgressBar(label: string, options: ProgressOptions = {}): ProgressBar {
  const stream = options.stream ?? process.stderr;
  const tty = options.tty ?? Boolean(stream.isTTY);
  const width = options.width ?? 30;
  const fmt = options.unit === "params" ? formatParams : formatBytes;
  let lastPct = -1;
  let drawn = false;
  let lastDraw = 0;
  const clear = () => {
    if (tty && drawn) stream.write("\r\x1b[2K");
    drawn = false;
  };
  return {
    update(done, total, detail) {
      const frac = total > 0 ? Math.min(1, done / total) : 1;
      const pct = Math.floor(frac * 100);
      if (tty) {
        const now = Date.now();
        if (pct === lastPct && now - lastDraw < 100) return;
        lastDraw = now;
        lastPct = pct;
        const filled = Math.round(frac * width);
        const bar = "█".repeat(filled) + "░".repeat(width - filled);
        const tail = detail ? ` ${detail}` : "";
        stream.write(`\r\x1b[2K${label} ${bar} ${String(pct).padStart(3)}% ${fmt(done)}/${fmt(total)}${tail}`.slice(0, (stream.columns ?? 120) + 8));
        drawn = true;
      } else {
        // Plain mode: one line per quarter.
        const quarter = Math.floor(pct / 25) * 25;
        if (quarter <= lastPct) return;
        lastPct = quarter;
        stream.write(`${label}: ${quarter}% (${fmt(done)} of ${fmt(total)})\n`);
      }
    },
    finish(message) {
      clear();
      stream.write(`${label}: ${message}\n`);
      lastPct = -1;
    },
    log(message) {
      clear();
      stream.write(`${message}\n`);
    },
  };
}
