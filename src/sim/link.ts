import { UsageError } from '../util/errors.js';

/**
 * A link several migrations share: a capacity that may vary over time, and a fair share among
 * the flows active on it. TCP flows through one bottleneck converge to max-min fairness (each gets
 * an equal share, and a flow that needs less — capped by its streams or by a bandwidth limit —
 * leaves the rest to the others); that is what `share` computes, per simulation step.
 */
export interface LinkVariation {
  /** The capacity's share over time, a step function replayed in a loop (e.g. other traffic). */
  schedule?: { atS: number; share: number }[];
  /** Or a sinusoid: capacity × (1 − depth/2 + depth/2 × cos(2πt/periodS)). */
  periodS?: number;
  depth?: number;
}

export class SharedLink {
  /** Bytes carried so far. */
  carried = 0;
  constructor(
    readonly name: string,
    /** Capacity, bytes/s. */
    readonly capacityBps: number,
    readonly rttMs = 0,
    readonly variation: LinkVariation = {},
  ) {
    if (!(capacityBps > 0 && Number.isFinite(capacityBps)))
      throw new UsageError(`link ${name}: the capacity must be a number above 0`);
    const v = variation;
    if (v.depth !== undefined && !(v.depth >= 0 && v.depth < 1))
      throw new UsageError(`link ${name}: variation depth must be in [0, 1)`);
    if (v.periodS !== undefined && !(v.periodS > 0))
      throw new UsageError(`link ${name}: variation period must be above 0 s`);
    for (const s of v.schedule ?? [])
      if (!(s.share > 0 && s.share <= 1 && s.atS >= 0))
        throw new UsageError(`link ${name}: schedule shares must be in (0, 1] at times ≥ 0`);
  }

  /** Capacity at time t (ms). */
  capacityAt(tMs: number): number {
    const v = this.variation;
    const t = tMs / 1000;
    if (v.schedule?.length) {
      const span = v.schedule.at(-1)!.atS + 1;
      const x = t % span;
      let share = v.schedule[0]!.share;
      for (const e of v.schedule) if (e.atS <= x) share = e.share;
      return this.capacityBps * share;
    }
    if (v.periodS && v.depth)
      return this.capacityBps * (1 - v.depth / 2 + (v.depth / 2) * Math.cos((2 * Math.PI * t) / v.periodS));
    return this.capacityBps;
  }

  /** Max-min fair shares of the capacity at t among flows that each want at most `demands[i]`. */
  share(demands: number[], tMs: number): number[] {
    return maxMinShare(this.capacityAt(tMs), demands);
  }
}

/** Water-filling: equal shares, a flow wanting less than its share gives the rest to the others. */
export function maxMinShare(capacity: number, demands: number[]): number[] {
  const out = demands.map(() => 0);
  const order = demands.map((d, i) => [d, i] as const).sort((a, b) => a[0] - b[0]);
  let left = capacity;
  for (let k = 0; k < order.length; k++) {
    const [d, i] = order[k]!;
    const fair = left / (order.length - k);
    out[i] = Math.min(d, fair);
    left -= out[i]!;
  }
  return out;
}
