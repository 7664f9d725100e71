/** Progress lines on stderr while a run goes: rewritten in place on a terminal, one line per tick otherwise. */
export interface ProgressSink {
  update(line: string): void;
  done(line?: string): void;
}

export function stderrProgress({ intervalMs = 1000 }: { intervalMs?: number } = {}): ProgressSink {
  const tty = process.stderr.isTTY === true;
  let lastWrite = 0;
  let shown = false;
  return {
    update(line) {
      const now = Date.now();
      if (now - lastWrite < (tty ? 100 : intervalMs)) return;
      lastWrite = now;
      if (tty) {
        process.stderr.write(`\r\x1b[2K${line}`);
        shown = true;
      } else process.stderr.write(`${line}\n`);
    },
    done(line) {
      if (tty && shown) process.stderr.write("\r\x1b[2K");
      if (line) process.stderr.write(`${line}\n`);
      shown = false;
    },
  };
}

/** A sink that drops everything (tests, library use). */
export const silentProgress: ProgressSink = { update() {}, done() {} };
