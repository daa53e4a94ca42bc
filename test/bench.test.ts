// The bench's pure parts: statistics, parsing of the laptop's timing lines, the run plan and the
// RESULTS.md renderer. Nothing here times anything (the bench itself is `npm run bench`).
import test from "ava";
import { parseTimings, timingScript } from "../bench/connect.ts";
import { stepName } from "../bench/enroll.ts";
import { parseProbe } from "../bench/recovery.ts";
import { figures, renderResults, type Results } from "../bench/results.ts";
import { plan } from "../bench/run.ts";
import { judge, median, pairedRatios, summarize } from "../bench/stats.ts";

test("median, min and max of repeated runs", (t) => {
  t.deepEqual(summarize([3, 1, 2]), { n: 3, min: 1, median: 2, max: 3 });
  t.is(median([4, 1, 3, 2]), 2.5);
  t.throws(() => summarize([]), { instanceOf: RangeError });
});

test("ratios pair run i with baseline run i, or use the baseline's median when counts differ", (t) => {
  t.deepEqual(pairedRatios([2, 6], [1, 3]), [2, 2]);
  t.deepEqual(pairedRatios([2, 4, 6], [2]), [1, 2, 3]);
});

test("a goal is judged on the median and says by how much it was missed", (t) => {
  t.deepEqual(judge({ text: "", on: "ratio", kind: "max", limit: 1.5 }, 1.2), { met: true, figure: 1.2, missedBy: 0 });
  const v = judge({ text: "", on: "ratio", kind: "max", limit: 1.5 }, 1.8);
  t.false(v.met);
  t.is(Math.round(v.missedBy * 100), 20);
  t.true(judge({ text: "", on: "value", kind: "min", limit: 0.9 }, 0.95).met);
});

test("the laptop's timing lines become milliseconds per kind; failures are not numbers", (t) => {
  t.deepEqual(parseTimings("direct 100000\ncold 150500\nFAIL reused boom\ncold 149500\n"), { direct: [100], cold: [150.5, 149.5] });
  const script = timingScript({ a: "true", b: "false" }, 3);
  t.regex(script, /kinds=\(a b\)/);
  t.regex(script, /for \(\(i = 0; i < 3; i\+\+\)\)/);
});

test("probe lines give an epoch per label, undefined on timeout", (t) => {
  t.deepEqual(parseProbe("relay 1700000000123\ndirect TIMEOUT\n"), { relay: 1700000000123, direct: undefined });
});

test("enrollment step labels line up across runs without losing the platform", (t) => {
  t.is(stepName("relay: device port 20017"), "relay: device port N");
  t.is(stepName("local image x ready for linux/amd64"), "local image x ready for linux/amd64");
});

test("the plan: full by default, --quick shrinks, --only checks its names", (t) => {
  const full = plan([]);
  t.is(full.tunnels, 1000);
  t.is(full.bytes, 256 * 2 ** 20);
  t.true(full.connectRounds >= 10);
  const quick = plan(["--quick", "--only", "connect,scale"]);
  t.deepEqual(quick.only, ["connect", "scale"]);
  t.is(quick.tunnels, 100);
  t.is(quick.bytes, 32 * 2 ** 20);
  t.throws(() => plan(["--only", "speed"]), { instanceOf: RangeError });
});

test("RESULTS.md is rendered from the results object: ratios, verdicts and the machine", (t) => {
  const results: Results = {
    date: "2026-01-01T00:00:00.000Z", command: "npm run bench", quick: false, durationSeconds: 60,
    machine: { "CPUs (nproc)": "2" }, notes: ["quiet machine"],
    sections: [{
      id: "connect", title: "Connect", method: ["interleaved"], findings: ["two handshakes"],
      rows: [{ name: "cold", unit: "ms", values: [150, 160, 170], baseline: { name: "direct", values: [100, 100, 100] }, goal: { text: "at most 1.5x direct", on: "ratio", kind: "max", limit: 1.5 } }],
      profiles: [{ label: "a transfer", wallSeconds: 2, lines: [{ container: "relay", process: "sshd-session [tunnel]", cpuSeconds: 1.5 }] }],
    }],
  };
  const f = figures(results.sections[0]!.rows[0]!);
  t.is(f.ratio?.median, 1.6);
  t.false(f.met);
  const md = renderResults(results);
  t.regex(md, /\| CPUs \(nproc\) \| 2 \|/);
  t.regex(md, /\*\*missed\*\* by 7% \(1\.60x\)/);
  t.regex(md, /1\.50x \/ \*\*1\.60x\*\* \/ 1\.70x/);
  t.regex(md, /sshd-session \[tunnel\] \| 1\.50 \| 75%/);
  t.regex(md, /- two handshakes/);
});
