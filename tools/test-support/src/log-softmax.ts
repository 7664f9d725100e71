// log_softmax in float64 of one logits row: the reference that logprobs checks compare against.
export function logSoftmax(row: Float32Array): Float64Array {
  let mx = -Infinity;
  for (const v of row) mx = Math.max(mx, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - mx);
  const lse = mx + Math.log(sum);
  return Float64Array.from(row, (v) => v - lse);
}
