/** n token ids in [0, 100000), a fixed pseudo-random sequence per salt (a 32-bit integer hash chain), for the benches. */
export function pseudoTokens(n: number, salt: number): number[] {
  const out: number[] = [];
  let x = (salt * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x ^ (x >>> 15), 2246822519) + 374761393) >>> 0;
    out.push(x % 100_000);
  }
  return out;
}
