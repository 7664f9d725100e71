import { describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { createProgressBar } from "../src/progress.js";

function sink(): { stream: NodeJS.WriteStream; text: () => string } {
  let text = "";
  const w = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  return { stream: w as unknown as NodeJS.WriteStream, text: () => text };
}

describe("progress bar", () => {
  it("prints one plain line per quarter when not a TTY", () => {
    const s = sink();
    const bar = createProgressBar("job", { stream: s.stream, tty: false });
    for (let i = 0; i <= 100; i++) bar.update(i * 1024, 100 * 1024);
    bar.finish("done");
    expect(s.text()).toBe(
      "job: 0% (0 B of 100.0 KiB)\njob: 25% (25.0 KiB of 100.0 KiB)\njob: 50% (50.0 KiB of 100.0 KiB)\njob: 75% (75.0 KiB of 100.0 KiB)\njob: 100% (100.0 KiB of 100.0 KiB)\njob: done\n",
    );
  });

  it("redraws in place on a TTY and clears the line before logging", () => {
    const s = sink();
    const bar = createProgressBar("job", { stream: s.stream, tty: true, width: 10 });
    bar.update(5, 10, "t1");
    bar.log("hello");
    bar.update(10, 10);
    bar.finish("done");
    const t = s.text();
    expect(t).toContain("\r\x1b[2Kjob █████░░░░░  50% 5 B/10 B t1");
    expect(t).toContain("\r\x1b[2Khello\n");
    expect(t).toContain("job ██████████ 100% 10 B/10 B");
    expect(t.endsWith("\r\x1b[2Kjob: done\n")).toBe(true);
  });
});
