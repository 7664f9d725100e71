import { afterAll, describe, expect, it } from "vitest";
import { DetokenizerFinishedError, InvalidOptionsError, InvalidTokenIdError, Tokenizer, type IncrementalDetokenizer } from "../src/index.js";
import { chatmlModelFiles, prng, randomText, TempDirs } from "./fixtures.js";

const dirs = new TempDirs();
const tok = Tokenizer.fromModelDir(dirs.make(chatmlModelFiles()));
afterAll(() => {
  tok.free();
  dirs.cleanup();
});

/** Pushes ids in chunks of random size; returns every emitted piece, the flush included. */
function stream(d: IncrementalDetokenizer, ids: number[], rand: () => number, maxChunk = 4) {
  const pieces: string[] = [];
  let stopped: string | undefined;
  for (let i = 0; i < ids.length; ) {
    const n = 1 + Math.floor(rand() * maxChunk);
    const out = d.push(ids.slice(i, i + n));
    pieces.push(out.text);
    if (out.stopped) {
      expect(stopped).toBeUndefined();
      stopped = out.stopped.stop;
    }
    i += n;
  }
  const tail = d.flush();
  pieces.push(tail.text);
  if (tail.stopped) stopped = tail.stopped.stop;
  return { pieces, text: pieces.join(""), stopped };
}

describe("UTF-8 across tokens", () => {
  it("holds a character split across tokens until it is complete", () => {
    const s = "a🦜b𝕏c";
    const ids = tok.encode(s);
    const partial = ids.filter((id) => {
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(tok.tokenBytes(id));
        return false;
      } catch {
        return true;
      }
    });
    expect(partial.length).toBeGreaterThan(0); // the sample really splits characters
    const d = tok.createDetokenizer();
    const pieces = ids.map((id) => d.push([id]).text);
    for (const p of pieces) expect(p).not.toContain("\ufffd");
    expect(pieces).toContain("");
    expect(pieces.join("") + d.flush().text).toBe(s);
  });

  it("flushes an incomplete trailing character as U+FFFD, like decode()", () => {
    const ids = tok.encode("🦜");
    const first = ids.slice(0, 1);
    const d = tok.createDetokenizer();
    expect(d.push(first).text).toBe("");
    const tail = d.flush().text;
    expect(tail).toBe(tok.decode(first));
    expect(tail).toContain("\ufffd");
  });

  it("concatenated output equals decode() of all tokens, for random text and random ids (seeded)", () => {
    const rand = prng(1234);
    for (let round = 0; round < 200; round++) {
      let ids: number[];
      if (round % 2 === 0) ids = tok.encode(randomText(rand, 1 + Math.floor(rand() * 80)));
      else ids = Array.from({ length: 1 + Math.floor(rand() * 60) }, () => Math.floor(rand() * tok.vocabSize));
      const skip = round % 4 < 2;
      const { text } = stream(tok.createDetokenizer({ skipSpecialTokens: skip }), ids, rand);
      expect(text).toBe(tok.decode(ids, { skipSpecialTokens: skip }));
    }
  });

  it("stays equal to decode() on byte-level garbage: random single-byte tokens (invalid UTF-8 everywhere)", () => {
    const rand = prng(77);
    const byteIds = Array.from({ length: 256 }, (_, i) => i);
    for (const id of byteIds) expect(tok.tokenBytes(id)).toHaveLength(1); // cl100k's ranks 0..255 are the 256 bytes
    const idOfByte = new Map(byteIds.map((id) => [tok.tokenBytes(id)[0]!, id]));
    // lead bytes with special second-byte ranges, and the edges of those ranges
    const tricky = [0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1];
    const multi = tok.encode("é中🦜a"); // whole characters between the garbage
    const pick = (): number => {
      const r = rand();
      if (r < 0.5) return idOfByte.get(tricky[Math.floor(rand() * tricky.length)]!)!;
      if (r < 0.8) return byteIds[Math.floor(rand() * 256)]!;
      return multi[Math.floor(rand() * multi.length)]!;
    };
    for (let round = 0; round < 500; round++) {
      const ids = Array.from({ length: 1 + Math.floor(rand() * 40) }, pick);
      expect(stream(tok.createDetokenizer(), ids, rand, 3).text).toBe(tok.decode(ids));
    }
  });

  it("skips special tokens by default, keeps them when asked", () => {
    const ids = tok.encode("<|im_start|>hi<|im_end|>", { allowedSpecial: "all" });
    const a = tok.createDetokenizer();
    expect(a.push(ids).text + a.flush().text).toBe("hi");
    const b = tok.createDetokenizer({ skipSpecialTokens: false });
    expect(b.push(ids).text + b.flush().text).toBe("<|im_start|>hi<|im_end|>");
    expect(b.tokenCount).toBe(ids.length);
  });
});

describe("stop strings", () => {
  it("finds a stop string that spans tokens, cuts it and reports it", () => {
    const text = "Hello world, this is the end of it.";
    const ids = tok.encode(text);
    const stop = "o world, th"; // spans "Hello" / " world" / "," / " this"
    const d = tok.createDetokenizer({ stop: [stop, "never"] });
    const outs = ids.map((id) => d.push([id]));
    const hit = outs.findIndex((o) => o.stopped);
    expect(hit).toBeGreaterThan(0);
    expect(outs[hit]!.stopped).toEqual({ stop });
    expect(outs.map((o) => o.text).join("")).toBe("Hell");
    expect(outs.slice(hit + 1).every((o) => o.text === "" && !o.stopped)).toBe(true);
    expect(d.stoppedBy).toBe(stop);
    expect(d.flush()).toEqual({ text: "" });
  });

  it("holds back a possible prefix, then releases it when the stop does not follow", () => {
    const d = tok.createDetokenizer({ stop: ["world peace"] });
    const [hello, world, comma] = [tok.encode("Hello"), tok.encode(" world"), tok.encode(", friend")];
    expect(d.push(hello).text).toBe("Hello");
    expect(d.push(world).text).toBe(" "); // " world" ends with "world", a prefix of the stop
    expect(d.push(comma).text).toBe("world, friend");
    expect(d.flush().text).toBe("");
  });

  it("emits a held prefix at flush when the sequence ends", () => {
    const d = tok.createDetokenizer({ stop: ["\n\nUser:"] });
    expect(d.push(tok.encode("Answer.\n\nUs")).text).toBe("Answer.");
    expect(d.flush()).toEqual({ text: "\n\nUs" });
  });

  it("matches a reference (text up to the first stop) for random texts, stops and chunkings (seeded)", () => {
    const rand = prng(99);
    for (let round = 0; round < 300; round++) {
      const text = randomText(rand, 20 + Math.floor(rand() * 60));
      const ids = tok.encode(text);
      const full = tok.decode(ids);
      // stops: random substrings of the text plus a random string; none contains another (so the first stop to
      // complete is also the one that starts first, whatever the chunking)
      const cands = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => {
        const a = Math.floor(rand() * full.length);
        return full.slice(a, a + 1 + Math.floor(rand() * 6));
      }).concat(randomText(rand, 3));
      const stops = cands.filter((s, i) => s.length > 0 && cands.every((o, j) => i === j || !o.includes(s) || o === s));
      const uniq = [...new Set(stops)].filter((s) => !/[\ud800-\udfff]/.test(s.slice(-1)) && !/[\ud800-\udfff]/.test(s[0]!));
      if (uniq.length === 0) continue;
      let at = -1;
      let which: string | undefined;
      for (const s of uniq) {
        const i = full.indexOf(s);
        if (i >= 0 && (at < 0 || i < at)) [at, which] = [i, s];
      }
      const expected = at < 0 ? full : full.slice(0, at);
      const r = stream(tok.createDetokenizer({ stop: uniq }), ids, rand, 3);
      expect(r.text).toBe(expected);
      expect(r.stopped).toBe(which);
    }
  });
});

describe("detokenizer misuse", () => {
  it("rejects bad stop options", () => {
    expect(() => tok.createDetokenizer({ stop: [""] })).toThrow(InvalidOptionsError);
    expect(() => tok.createDetokenizer({ stop: ["x".repeat(1025)] })).toThrow(InvalidOptionsError);
    expect(() => tok.createDetokenizer({ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) })).toThrow(InvalidOptionsError);
  });

  it("rejects invalid ids and pushes after flush", () => {
    const d = tok.createDetokenizer();
    const [a, ...rest] = tok.encode("🦜") as [number, ...number[]];
    expect(d.push([a]).text).toBe("");
    expect(() => d.push([...rest, 15339, tok.vocabSize])).toThrow(InvalidTokenIdError);
    expect(d.tokenCount).toBe(1); // the refused batch left no trace
    expect(() => d.push(5 as unknown as number[])).toThrow(InvalidOptionsError);
    expect(d.push(rest).text).toBe("🦜");
    expect(d.push([15339]).text).toBe("hello");
    expect(d.flush().text).toBe("");
    expect(() => d.push([1])).toThrow(DetokenizerFinishedError);
  });
});
