// `npm run bench`: measured speed, scale and recovery of rtunnel next to direct SSH, on real
// containers and real OpenSSH. Not part of `npm test`. Writes bench/results.json and the
// rendered bench/RESULTS.md (a full run), or bench/out/ (--quick, --only, or --out DIR).
//   npm run bench                       everything (about 25 min on 2 cores)
//   npm run bench -- --quick            smoke run: fewer runs, 100 tunnels, 32 MiB
//   npm run bench -- --only connect,recovery
//   npm run bench -- --only scale --merge bench/results.json   replace one section of a full run
//   npm run bench -- --merge bench/results.json --from bench/out/results.json   the same, from a finished run
//   npm run bench -- --only scale --relay-cpus 0.25 --no-flood   the relay short of CPU in the last restart (default 0.5); no flood phase
import { existsSync, writeFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { docker, ensureDocker, exec, repoRoot, run, Scope } from "../lib/fixtures/index.ts";
import { benchConnect } from "./connect.ts";
import { benchEnroll } from "./enroll.ts";
import { benchRecovery } from "./recovery.ts";
import { renderResults, type Results, type Section } from "./results.ts";
import { benchScale } from "./scale.ts";
import { benchThroughput } from "./throughput.ts";
import { hasNetem, startWorld, type World } from "./world.ts";

export const SECTIONS = ["connect", "throughput", "recovery", "enroll", "scale"] as const;
type SectionId = (typeof SECTIONS)[number];

export interface Plan {
  quick: boolean;
  only: SectionId[];
  connectRounds: number;
  bytes: number;
  throughputRuns: number;
  rate: string;
  restarts: number;
  cuts: number;
  cutSeconds: number;
  removes: number;
  deadSessions: number;
  tunnels: number;
  /** the relay's CPU cap in the scale section's last restart (a relay short of CPU) */
  relayCpus: number;
  /** the scale section's restart under a flood */
  flood: boolean;
  stormRuns: number;
  enrollRuns: number;
}

/** What a run does, from its command line (pure). */
export function plan(argv: readonly string[]): Plan & { out?: string; merge?: string; from?: string } {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      out: { type: "string" },
      merge: { type: "string" },
      tunnels: { type: "string" },
      from: { type: "string" },
      "relay-cpus": { type: "string" },
      "no-flood": { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.from && !values.merge) throw new RangeError("--from needs --merge FILE (the full run its sections replace)");
  const only = (values.only ? values.only.split(",").map((s) => s.trim()).filter(Boolean) : [...SECTIONS]) as SectionId[];
  for (const s of only) {
    if (!SECTIONS.includes(s)) throw new RangeError(`--only takes ${SECTIONS.join(",")} (got ${JSON.stringify(s)})`);
  }
  const quick = values.quick ?? false;
  const tunnels = values.tunnels ? Number(values.tunnels) : quick ? 100 : 1000;
  if (!Number.isInteger(tunnels) || tunnels < 1 || tunnels > 5000) throw new RangeError(`--tunnels must be 1-5000 (got ${values.tunnels})`);
  const relayCpus = values["relay-cpus"] === undefined ? 0.5 : Number(values["relay-cpus"]);
  if (!(relayCpus >= 0.1 && relayCpus <= 64)) throw new RangeError(`--relay-cpus must be a number of CPUs from 0.1 to 64 (got ${values["relay-cpus"]})`);
  return {
    quick, only, out: values.out, merge: values.merge, from: values.from, tunnels, relayCpus, flood: !values["no-flood"],
    connectRounds: quick ? 5 : 15,
    bytes: (quick ? 32 : 256) * 2 ** 20,
    throughputRuns: quick ? 2 : 3,
    rate: "100mbit",
    restarts: quick ? 2 : 5,
    cuts: quick ? 1 : 2,
    cutSeconds: 20,
    removes: quick ? 2 : 5,
    deadSessions: quick ? 1 : 2,
    stormRuns: 1,
    enrollRuns: quick ? 1 : 2,
  };
}

async function machine(w: World | undefined): Promise<Record<string, string>> {
  const cpu = /model name\s*:\s*(.+)/.exec(await readFile("/proc/cpuinfo", "utf8").catch(() => ""))?.[1] ?? "?";
  const v = async (c: string, argv: string[]) => {
    const r = await exec(c, argv, { check: false });
    return (r.stderr + r.stdout).trim().split("\n")[0] ?? "?";
  };
  const m: Record<string, string> = {
    "CPUs (nproc)": String(os.availableParallelism()),
    "CPU model": cpu,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    docker: `${(await docker(["version", "--format", "client {{.Client.Version}}, server {{.Server.Version}}"])).stdout.trim()}`,
    node: process.version,
    checkout: await checkout(),
  };
  if (w) {
    m["OpenSSH on the laptop and raspi (host image)"] = await v(w.laptop, ["ssh", "-V"]);
    m["OpenSSH on the relay (rtunneld image)"] = await v(w.relay, ["ssh", "-V"]);
    m["OpenSSH in the device agent (rtunnel image)"] = await v(w.agent, ["ssh", "-V"]);
  }
  return m;
}

/** The commit measured, and which image files differed from it (the images are built from the working tree). */
async function checkout(): Promise<string> {
  const head = (await run("git", ["rev-parse", "--short", "HEAD"], { cwd: repoRoot, check: false })).stdout.trim();
  const dirty = (await run("git", ["status", "--porcelain", "--", "images", "infra", "provision"], { cwd: repoRoot, check: false })).stdout
    .split("\n").filter(Boolean).map((l) => l.slice(3));
  return dirty.length ? `${head}, with uncommitted changes in ${dirty.join(", ")}` : head;
}

/**
 * A full run with the sections of a later partial run in place of its own (pure). An earlier
 * re-run of the same sections is replaced whole: its notes and its command go with its figures.
 */
export function mergeResults(old: Results, fresh: Results): Results {
  const ids = new Set(fresh.sections.map((s) => s.id));
  const sections = [...old.sections.filter((s) => !ids.has(s.id)), ...fresh.sections];
  sections.sort((a, b) => SECTIONS.indexOf(a.id as SectionId) - SECTIONS.indexOf(b.id as SectionId));
  const rerunTag = `(${[...ids].join(", ")} re-run on `;
  return {
    ...fresh,
    command: `${old.command.split(`, then ${fresh.command}`).join("")}, then ${fresh.command}`,
    durationSeconds: old.durationSeconds + fresh.durationSeconds,
    notes: [
      ...old.notes.filter((n) => !n.startsWith(rerunTag)).map((n) => (n.startsWith("(") ? n : `(${old.date}) ${n}`)),
      ...fresh.notes.map((n) => `${rerunTag}${fresh.date}) ${n}`),
    ],
    sections,
    quick: old.quick || fresh.quick,
  };
}

async function writeResults(outDir: string, results: Results): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await writeFile(path.join(outDir, "results.json"), `${JSON.stringify(results, null, 1)}\n`);
  await writeFile(path.join(outDir, "RESULTS.md"), renderResults(results));
}

const load = () => os.loadavg().map((x) => x.toFixed(2)).join(" ");

/** Docker's containers as one cgroup v1 group: its CPU weight against the machine's other processes. */
const DOCKER_CPU_SHARES = "/sys/fs/cgroup/cpu/docker/cpu.shares";
const BENCH_CPU_SHARES = 16384;

/**
 * Under cgroup v1 every process outside Docker weighs as much as all containers together
 * (1024 each), so five busy processes of someone else's on this shared machine took 5/6 of
 * the CPU from the relay and its simulated devices, and decided the storm's numbers. While
 * the bench runs, the containers weigh 16 times more; the old weight is put back at the end.
 * Returns the note for RESULTS.md and the undo.
 */
async function favourContainers(): Promise<{ note: string; undo: () => Promise<void> }> {
  let before: string;
  try {
    before = (await readFile(DOCKER_CPU_SHARES, "utf8")).trim();
    await writeFile(DOCKER_CPU_SHARES, String(BENCH_CPU_SHARES));
  } catch (e) {
    return { note: `Docker's containers had their usual CPU weight against the machine's other processes (${DOCKER_CPU_SHARES}: ${(e as Error).message.split("\n")[0]}): other work on the machine weighs on these numbers.`, undo: async () => {} };
  }
  // Put back on Ctrl-C or a kill too, not only when the run ends: the weight is the machine's.
  const onSignal = (sig: NodeJS.Signals) => {
    writeFileSync(DOCKER_CPU_SHARES, before);
    process.exit(sig === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return {
    note: `While the bench ran, Docker's containers weighed ${BENCH_CPU_SHARES} against 1024 for each of the machine's other processes (${DOCKER_CPU_SHARES}, was ${before}, put back after), so that other work on this shared machine does not decide its numbers.`,
    undo: async () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      await writeFile(DOCKER_CPU_SHARES, before).catch(() => {});
    },
  };
}

async function main(): Promise<void> {
  const p = plan(process.argv.slice(2));
  const t0 = Date.now();
  const log = (l: string) => process.stderr.write(`bench: ${l}\n`);
  if (p.from && p.merge) {
    const read = async (f: string) => JSON.parse(await readFile(f, "utf8")) as Results;
    await writeResults(path.dirname(path.resolve(p.merge)), mergeResults(await read(p.merge), await read(p.from)));
    log(`merged ${p.from} into ${p.merge}`);
    return;
  }
  const notes: string[] = [`Load average (1/5/15 min) at the start: ${load()}.`];
  log(`plan: ${JSON.stringify(p)}`);
  await ensureDocker();
  const weight = await favourContainers();
  notes.push(weight.note);
  const scope = new Scope("bench");
  const sections: Section[] = [];
  let w: World | undefined;
  let mach: Record<string, string> | undefined;
  const section = async (id: SectionId, title: string, f: () => Promise<Section>) => {
    if (!p.only.includes(id)) return;
    log(`${id}: start (load ${load()})`);
    const started = Date.now();
    try {
      sections.push(await f());
    } catch (e) {
      log(`${id}: FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      sections.push({ id, title, method: [], rows: [], findings: [], error: e instanceof Error ? e.message : String(e) });
    }
    log(`${id}: done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  };
  try {
    w = await startWorld(scope, log);
    mach = await machine(w);
    const world = w;
    const netem = await hasNetem(world);
    if (!netem) notes.push("This kernel has no sch_netem (CONFIG_NET_SCH_NETEM is not set): links were rate-limited with tbf, no delay could be added.");
    await section("connect", "Connect: ssh raspi true", () => benchConnect(world, p.connectRounds));
    await section("throughput", "Throughput: raspi → laptop", () => benchThroughput(world, { bytes: p.bytes, runs: p.throughputRuns, rate: p.rate, netem }));
    await section("recovery", "Recovery", () => benchRecovery(world, { restarts: p.restarts, cuts: p.cuts, cutSeconds: p.cutSeconds, removes: p.removes, deadSessions: p.deadSessions }));
    // Enrollment before scale: with a thousand devices in the registry, every admin call is slower.
    await section("enroll", "Enrollment: enroll-device on the LAN", () => benchEnroll(world, { runs: p.enrollRuns, log }));
    await section("scale", `Scale: ${p.tunnels} device tunnels on one relay`, () => benchScale(world, { tunnels: p.tunnels, connectRounds: p.quick ? 5 : 10, relayCpus: p.relayCpus, flood: p.flood, log }));
  } finally {
    await scope.dispose();
    await w?.dispose();
    await weight.undo();
  }
  notes.push(`Load average at the end: ${load()} (the scale section's own simulated devices, a thousand processes, count in it). Other engineers' test runs shared this machine during the run; the interleaved baselines are what keep the ratios honest.`);

  const full = !p.quick && p.only.length === SECTIONS.length;
  const outDir = p.out ? path.resolve(p.out) : full || p.merge ? path.join(repoRoot, "bench") : path.join(repoRoot, "bench", "out");
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
  let results: Results = {
    date: new Date().toISOString(), command, quick: p.quick, durationSeconds: (Date.now() - t0) / 1000, machine: mach ?? (await machine(undefined)), notes, sections,
  };
  if (p.merge && existsSync(p.merge)) results = mergeResults(JSON.parse(await readFile(p.merge, "utf8")) as Results, results);
  await writeResults(outDir, results);
  log(`wrote ${path.join(outDir, "RESULTS.md")} in ${((Date.now() - t0) / 60_000).toFixed(1)} min`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.dirname ?? "", "run.ts")) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  });
}
