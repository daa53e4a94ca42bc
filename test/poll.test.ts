// The bounded-concurrency helpers the Docker case tables run on: whatever the items, their
// keys and the time each takes, no more than `limit` run at once, no more than `perKey` of
// one key, every item runs exactly once and the results come back in input order.
import test from "ava";
import fc from "fast-check";
import { mapLimit, mapLimitPerKey } from "../lib/poll.ts";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("mapLimitPerKey keeps both bounds and every result in order (fast-check)", async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ key: fc.constantFrom("a", "b", "c", "d"), ms: fc.integer({ min: 0, max: 3 }) }), { maxLength: 30 }),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 3 }),
      async (items, limit, perKey) => {
        let now = 0;
        let peak = 0;
        const byKey = new Map<string, number>();
        let peakPerKey = 0;
        const out = await mapLimitPerKey(items, { limit, perKey, keyOf: (x) => x.key }, async (x, i) => {
          now++;
          byKey.set(x.key, (byKey.get(x.key) ?? 0) + 1);
          peak = Math.max(peak, now);
          peakPerKey = Math.max(peakPerKey, byKey.get(x.key)!);
          await tick(x.ms);
          byKey.set(x.key, byKey.get(x.key)! - 1);
          now--;
          return i;
        });
        return peak <= limit && peakPerKey <= perKey && out.length === items.length && out.every((v, i) => v === i);
      },
    ),
    { numRuns: 100 },
  );
  t.pass();
});

test("mapLimitPerKey runs different keys side by side (it is not a queue of one)", async (t) => {
  let now = 0;
  let peak = 0;
  await mapLimitPerKey(["a", "b", "c", "a", "b", "c"], { limit: 3, perKey: 1, keyOf: (k) => k }, async () => {
    peak = Math.max(peak, ++now);
    await tick(5);
    now--;
  });
  t.is(peak, 3);
});

test("mapLimit keeps its bound and the input order", async (t) => {
  let now = 0;
  let peak = 0;
  const out = await mapLimit([3, 1, 2, 0, 1], 2, async (ms, i) => {
    peak = Math.max(peak, ++now);
    await tick(ms);
    now--;
    return i;
  });
  t.deepEqual(out, [0, 1, 2, 3, 4]);
  t.is(peak, 2);
});
