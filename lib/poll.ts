/**
 * Polls `probe` until it returns true: bounded tries, never a bare sleep, and a loud failure
 * naming what never happened. The bounds are for a machine that is busy (2 cores shared with
 * other runs): generous, because they only stop a hang; they measure nothing.
 * A probe that throws counts as "not yet", unless `rethrow` says the error is final.
 */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  { tries = 120, intervalMs = 500, rethrow = false }: { tries?: number; intervalMs?: number; rethrow?: boolean } = {},
): Promise<void> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      if (await probe()) return;
    } catch (e) {
      if (rethrow) throw e;
      last = e;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  const why = last instanceof Error ? `; the last probe failed: ${last.message}` : "";
  throw new Error(`timed out waiting for ${what} (${tries} tries, ${intervalMs} ms apart)${why}`);
}

/** Runs `fn` over `items` with at most `limit` at a time, results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]!, i);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

/**
 * mapLimit that also runs at most `perKey` items of one key at a time (results in input
 * order): a table of ssh cases must stay inside the relay's per-key connection limits,
 * whatever order its cases come in.
 */
export async function mapLimitPerKey<T, R>(
  items: readonly T[],
  { limit, perKey, keyOf }: { limit: number; perKey: number; keyOf: (item: T) => string },
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  const waiting = items.map((_, i) => i);
  const running = new Map<string, number>();
  const sleepers: (() => void)[] = [];
  const lane = async (): Promise<void> => {
    for (;;) {
      const at = waiting.findIndex((i) => (running.get(keyOf(items[i]!)) ?? 0) < perKey);
      if (at < 0) {
        if (!waiting.length) return;
        // Every waiting item's key is busy: sleep until some item ends.
        await new Promise<void>((r) => sleepers.push(r));
        continue;
      }
      const [i] = waiting.splice(at, 1) as [number];
      const key = keyOf(items[i]!);
      running.set(key, (running.get(key) ?? 0) + 1);
      try {
        out[i] = await fn(items[i]!, i);
      } finally {
        running.set(key, running.get(key)! - 1);
        for (const wake of sleepers.splice(0)) wake();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}
