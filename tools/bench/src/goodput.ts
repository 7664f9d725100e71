/** One point of a rate sweep for goodput: the offered rate and the fraction of requests meeting the SLO. */
export interface AttainmentPoint {
  rate: number;
  attainment: number;
}

export interface Goodput {
  /** Required attainment, 0.9 as in DistServe. */
  target: number;
  /**
   * The highest swept rate such that it and every lower swept rate reach the target; 0 when even the lowest
   * rate misses. A higher rate that passes again after a failing one is not counted (noise, not capacity).
   */
  sweptRate: number;
  /**
   * sweptRate moved toward the first failing rate by linear interpolation of attainment, where the target is
   * crossed; equals sweptRate when every swept rate passed (the sweep did not find the limit) or none did.
   */
  interpolatedRate: number;
  /** True when every swept rate met the target: goodput is at least sweptRate, the sweep did not reach it. */
  saturated: boolean;
  /**
   * The highest swept rate that met the target, whether or not a lower rate missed it (the literal reading of
   * "the highest rate at which >= 90% meet the SLO"); 0 when none did. Differs from sweptRate only when
   * attainment is not monotonic in the rate (noise, bursts).
   */
  highestPassingRate: number;
}

/**
 * Goodput as in DistServe (arXiv 2401.09670): the highest request rate at which at least `target` of the
 * requests meet both the TTFT and the TPOT limit.
 */
export function computeGoodput(points: readonly AttainmentPoint[], target = 0.9): Goodput {
  const pts = [...points].sort((a, b) => a.rate - b.rate);
  const highestPassingRate = pts.reduce((best, p) => (p.attainment >= target ? Math.max(best, p.rate) : best), 0);
  let passIdx = -1;
  for (let i = 0; i < pts.length; i++) {
    if (pts[i].attainment >= target) passIdx = i;
    else break;
  }
  if (passIdx === -1) {
    // Below the lowest rate: interpolate from (0, 1) would be a guess, so report 0.
    return { target, sweptRate: 0, interpolatedRate: 0, saturated: false, highestPassingRate };
  }
  const pass = pts[passIdx];
  if (passIdx === pts.length - 1) return { target, sweptRate: pass.rate, interpolatedRate: pass.rate, saturated: true, highestPassingRate };
  const fail = pts[passIdx + 1];
  const f = (pass.attainment - target) / (pass.attainment - fail.attainment);
  return { target, sweptRate: pass.rate, interpolatedRate: pass.rate + f * (fail.rate - pass.rate), saturated: false, highestPassingRate };
}
