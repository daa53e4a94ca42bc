// The bench's results object and its one renderer, bench/RESULTS.md. Pure: every number in
// the file comes from the results object that a run measured; nothing here is typed by hand.
import { renderSizing, sizing } from "./sizing.ts";
import { judge, pairedRatios, summarize, type Goal, type Summary } from "./stats.ts";

export interface Row {
  /** what was measured, e.g. "cold connect, ssh raspi true" */
  name: string;
  unit: string;
  values: number[];
  /** measured in the same run, interleaved with `values` where the row says so */
  baseline?: { name: string; values: number[] };
  goal?: Goal;
  note?: string;
}

export interface ProfileLine {
  container: string;
  process: string;
  cpuSeconds: number;
}

/** CPU seconds per process while one transfer ran (which process, which hop). */
export interface Profile {
  label: string;
  wallSeconds: number;
  lines: ProfileLine[];
}

export interface Section {
  id: string;
  title: string;
  /** how it was measured: paths, runs, what the baseline is */
  method: string[];
  rows: Row[];
  profiles?: Profile[];
  /** what limits a missed goal and the change that would meet it (text built from the data) */
  findings: string[];
  /** set when the section could not run to the end */
  error?: string;
  /** tunnels up when the scale section read the relay's memory: the sizing table's divisor */
  tunnelsUp?: number;
}

export interface Results {
  date: string;
  command: string;
  quick: boolean;
  durationSeconds: number;
  machine: Record<string, string>;
  notes: string[];
  sections: Section[];
}

const fmt = (x: number): string => {
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 10) return x.toFixed(2);
  return x.toFixed(3).replace(/0$/, "");
};
const span = (s: Summary): string => `${fmt(s.min)} / **${fmt(s.median)}** / ${fmt(s.max)}`;
const ratioSpan = (s: Summary): string => `${s.min.toFixed(2)}x / **${s.median.toFixed(2)}x** / ${s.max.toFixed(2)}x`;
const cell = (t: string): string => t.replace(/\|/g, "\\|").replace(/\n/g, " ");

export interface RowFigures {
  value: Summary;
  baseline?: Summary;
  ratio?: Summary;
  verdict?: string;
  met?: boolean;
}

/** The figures of one row: summaries, paired ratios and the verdict on its goal. */
export function figures(r: Row): RowFigures {
  const value = summarize(r.values);
  const baseline = r.baseline && r.baseline.values.length ? summarize(r.baseline.values) : undefined;
  const ratio = baseline && r.baseline ? summarize(pairedRatios(r.values, r.baseline.values)) : undefined;
  if (!r.goal) return { value, baseline, ratio };
  const figure = r.goal.on === "ratio" ? ratio?.median : value.median;
  if (figure === undefined) return { value, baseline, ratio, verdict: "no baseline" };
  const v = judge(r.goal, figure);
  const shown = r.goal.on === "ratio" ? `${figure.toFixed(2)}x` : `${fmt(figure)} ${r.unit}`;
  const verdict = v.met ? `met (${shown})` : `**missed** by ${(v.missedBy * 100).toFixed(0)}% (${shown})`;
  return { value, baseline, ratio, verdict, met: v.met };
}

function rowTable(rows: readonly Row[]): string[] {
  const out = [
    "| measured | runs | value min / **median** / max | baseline (same run) min / **median** / max | ratio min / **median** / max | goal | verdict |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    const f = figures(r);
    const base = f.baseline && r.baseline ? `${cell(r.baseline.name)}: ${span(f.baseline)} ${r.unit}` : "—";
    const name = r.note ? `${cell(r.name)} (${cell(r.note)})` : cell(r.name);
    out.push(`| ${name} | ${f.value.n} | ${span(f.value)} ${r.unit} | ${base} | ${f.ratio ? ratioSpan(f.ratio) : "—"} | ${r.goal ? cell(r.goal.text) : "—"} | ${f.verdict ?? "—"} |`);
  }
  return out;
}

function profileTable(p: Profile): string[] {
  const out = [`CPU seconds per process during ${cell(p.label)} (${fmt(p.wallSeconds)} s wall; 2 cores = ${fmt(2 * p.wallSeconds)} CPU-s available):`, "", "| container | process | CPU s | share of wall |", "| --- | --- | --- | --- |"];
  for (const l of [...p.lines].sort((a, b) => b.cpuSeconds - a.cpuSeconds)) {
    out.push(`| ${cell(l.container)} | ${cell(l.process)} | ${fmt(l.cpuSeconds)} | ${((100 * l.cpuSeconds) / p.wallSeconds).toFixed(0)}% |`);
  }
  return out;
}

export function renderResults(r: Results): string {
  const lines: string[] = [
    "# rtunnel bench results",
    "",
    `Written by \`${r.command}\` on ${r.date} (${r.quick ? "**quick smoke run**: fewer runs, smaller sizes; not the figures to quote" : "full run"}; took ${(r.durationSeconds / 60).toFixed(1)} min).`,
    "Every number below comes from that run's results object (`bench/results.json`); this file is rendered from it by `bench/results.ts`.",
    "Real containers and real OpenSSH on one machine: the relay, the device, the laptop and the two NAT routers share its CPUs, so absolute times are this machine's, and each figure is set against a baseline measured in the same run, interleaved where the table says so.",
    "",
    "## Machine",
    "",
    "| | |",
    "| --- | --- |",
    ...Object.entries(r.machine).map(([k, v]) => `| ${cell(k)} | ${cell(v)} |`),
    "",
  ];
  if (r.notes.length) lines.push("## Notes on this run", "", ...r.notes.map((n) => `- ${n}`), "");

  const goals: string[] = [];
  for (const s of r.sections) {
    for (const row of s.rows) {
      if (!row.goal) continue;
      const f = figures(row);
      goals.push(`| ${cell(s.title)} | ${cell(row.name)} | ${cell(row.goal.text)} | ${f.verdict ?? "—"} |`);
    }
  }
  if (goals.length) lines.push("## Goals at a glance", "", "| section | measured | goal | verdict (median) |", "| --- | --- | --- | --- |", ...goals, "");

  for (const s of r.sections) {
    lines.push(`## ${s.title}`, "", ...s.method.map((m) => `- ${m}`), "");
    if (s.error) lines.push(`**This section did not finish:** ${cell(s.error)}`, "");
    if (s.rows.length) lines.push(...rowTable(s.rows), "");
    const sized = s.tunnelsUp !== undefined ? sizing(s, s.tunnelsUp) : undefined;
    if (sized) lines.push(...renderSizing(sized), "");
    for (const p of s.profiles ?? []) lines.push(...profileTable(p), "");
    if (s.findings.length) lines.push("Findings:", "", ...s.findings.map((f) => `- ${f}`), "");
  }
  return `${lines.join("\n").replace(/\n{3,}/g, "\n\n").trimEnd()}\n`;
}
