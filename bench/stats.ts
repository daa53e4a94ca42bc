// Statistics of the bench, pure: summaries of repeated runs, paired ratios against a baseline
// measured in the same run, and the verdict against a goal. No I/O.

export interface Summary {
  n: number;
  min: number;
  median: number;
  max: number;
}

/** The tables' median, NaN when there is nothing (for findings' text). */
export function med(xs: readonly number[] = []): number {
  return xs.length ? median(xs) : NaN;
}

export function median(xs: readonly number[]): number {
  if (!xs.length) throw new RangeError("median of no values");
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function summarize(xs: readonly number[]): Summary {
  if (!xs.length) throw new RangeError("summary of no values");
  return { n: xs.length, min: Math.min(...xs), median: median(xs), max: Math.max(...xs) };
}

/**
 * Ratios of runs taken in pairs (A B A B ...): value i over baseline i, so drift between
 * pairs cancels. With unequal lengths (a baseline measured fewer times), every value is set
 * against the baseline's median.
 */
export function pairedRatios(values: readonly number[], baseline: readonly number[]): number[] {
  if (!values.length || !baseline.length) throw new RangeError("ratios need values and a baseline");
  if (values.length === baseline.length) return values.map((v, i) => v / baseline[i]!);
  const b = median(baseline);
  return values.map((v) => v / b);
}

/** A goal from the issue: on the median, a ratio or an absolute value, at most or at least. */
export interface Goal {
  /** what the issue says, e.g. "at most 1.5x direct" */
  text: string;
  on: "ratio" | "value";
  /** "max": the figure must be <= limit; "min": >= limit */
  kind: "max" | "min";
  limit: number;
}

export interface Verdict {
  met: boolean;
  /** the median the goal is judged on */
  figure: number;
  /** how far past the limit, as a fraction of the limit (0 when met) */
  missedBy: number;
}

export function judge(goal: Goal, figure: number): Verdict {
  const met = goal.kind === "max" ? figure <= goal.limit : figure >= goal.limit;
  const missedBy = met ? 0 : Math.abs(figure - goal.limit) / goal.limit;
  return { met, figure, missedBy };
}
