// The bench's pure parts: statistics, parsing of the laptop's timing lines, the run plan and the
// RESULTS.md renderer. Nothing here times anything (the bench itself is `npm run bench`).
import { readFileSync } from "node:fs";
import path from "node:path";
import test from "ava";
import { parseTimings, timingScript } from "../bench/connect.ts";
import { stepName } from "../bench/enroll.ts";
import { parseProbe } from "../bench/recovery.ts";
import { figures, renderResults, type Results, type Section } from "../bench/results.ts";
import { CGROUP_ROW, sizing, smallestFor } from "../bench/sizing.ts";
import { mergeResults, plan } from "../bench/run.ts";
import { judge, median, pairedRatios, summarize } from "../bench/stats.ts";
import { repoRoot } from "../lib/paths.ts";

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
  t.throws(() => plan(["--from", "bench/out/results.json"]), { instanceOf: RangeError, message: /--from needs --merge/ });
  t.is(plan(["--merge", "bench/results.json", "--from", "bench/out/results.json"]).from, "bench/out/results.json");
});

test("a partial run's sections replace the full run's, in the full run's order, with both runs' notes", (t) => {
  const section = (id: string, finding: string): Section => ({ id, title: id, method: [], rows: [], findings: [finding] });
  const full: Results = {
    date: "2026-01-01T00:00:00.000Z", command: "npm run bench", quick: false, durationSeconds: 1500, machine: {}, notes: ["full run"],
    sections: [section("connect", "old connect"), section("scale", "old scale"), section("enroll", "old enroll")],
  };
  const partial: Results = {
    date: "2026-02-01T00:00:00.000Z", command: "npm run bench -- --only scale", quick: false, durationSeconds: 900, machine: {}, notes: ["partial run"],
    sections: [section("scale", "new scale")],
  };
  const merged = mergeResults(full, partial);
  t.deepEqual(merged.sections.map((s) => `${s.id}: ${s.findings[0]}`), ["connect: old connect", "enroll: old enroll", "scale: new scale"]);
  t.is(merged.durationSeconds, 2400);
  t.is(merged.command, "npm run bench, then npm run bench -- --only scale");
  t.deepEqual(merged.notes, ["(2026-01-01T00:00:00.000Z) full run", "(scale re-run on 2026-02-01T00:00:00.000Z) partial run"]);
  const again = mergeResults(merged, { ...partial, date: "2026-03-01T00:00:00.000Z", notes: ["second partial run"], sections: [section("scale", "newer scale")] });
  t.deepEqual(again.sections.map((s) => `${s.id}: ${s.findings[0]}`), ["connect: old connect", "enroll: old enroll", "scale: newer scale"]);
  t.is(again.command, "npm run bench, then npm run bench -- --only scale", "a re-run of the same sections replaces the earlier one's command");
  t.deepEqual(again.notes, ["(2026-01-01T00:00:00.000Z) full run", "(scale re-run on 2026-03-01T00:00:00.000Z) second partial run"], "and its notes");
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

test("tunnels per instance size: the relay's cgroup memory per tunnel, over what the host and the idle relay leave", (t) => {
  const section: Section = {
    id: "scale", title: "Scale", method: [], findings: [], tunnelsUp: 100,
    rows: [{ name: CGROUP_ROW, unit: "MiB", values: [230], baseline: { name: "idle", values: [30] } }],
  };
  const s = sizing(section, 100, 250)!;
  t.is(s.perTunnelMiB, 2);
  t.deepEqual(s.rows.map((r) => [r.instanceType, r.tunnels]), [["t4g.nano", 116], ["t4g.micro", 372], ["t4g.small", 884], ["t4g.medium", 1908]]);
  t.is(smallestFor(s, 1000)?.instanceType, "t4g.medium");
  t.is(sizing({ ...section, rows: [] }, 100), undefined, "no cgroup row, no table");
  t.regex(renderResults({ date: "", command: "", quick: false, durationSeconds: 0, machine: {}, notes: [], sections: [section] }), /\| t4g\.nano \| 512 MiB \| about \d+ \|/);
});

test("the READMEs quote the bench's one sizing table, and RESULTS.md is rendered from results.json", (t) => {
  const results = JSON.parse(readFileSync(path.join(repoRoot, "bench", "results.json"), "utf8")) as Results;
  t.is(readFileSync(path.join(repoRoot, "bench", "RESULTS.md"), "utf8"), renderResults(results), "bench/RESULTS.md is renderResults(bench/results.json)");
  const scale = results.sections.find((s) => s.id === "scale")!;
  const table = new Map(sizing(scale, scale.tunnelsUp!)!.rows.map((r) => [r.instanceType, r.tunnels]));
  let quoted = 0;
  for (const file of ["README.md", "infra/README.md", "images/rtunneld/README.md", "bench/README.md", "SECURITY.md"]) {
    const text = readFileSync(path.join(repoRoot, file), "utf8").replace(/\s+/g, " ");
    for (const m of text.matchAll(/`?(t4g\.[a-z0-9]+)`?[^.;:`]{0,30}?\babout (\d+)(?! ?%)/g)) {
      quoted++;
      t.is(table.get(m[1]!), Number(m[2]), `${file} says a ${m[1]} holds about ${m[2]}; bench/RESULTS.md says ${table.get(m[1]!)}`);
    }
  }
  t.true(quoted >= 4, `infra/README.md quotes the table (${quoted} figures found)`);
});
