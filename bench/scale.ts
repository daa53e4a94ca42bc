// scale: N device tunnels held by one relay. The devices are not containers each: N keys
// registered with the admin command, then N copies of the real device agent (images/rtunnel's
// script, its own ssh options and backoff, not a copy of them) in one "farm" container behind
// the home router (so, like devices behind one carrier-grade NAT, they all come from one
// address), each with its own configuration directory and key.
import { CGROUP_ROW } from "./sizing.ts";
import { readFile } from "node:fs/promises";
import os from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { renderAgentEnv, renderAgentKnownHosts } from "../lib/contract/agent.ts";
import { RELAY_CONNECTION_LIMITS, RELAY_CONTAINER_PORT } from "../lib/contract/relay.ts";
import { parsePublicKey } from "../lib/keys.ts";
import { listeningLoopbackPorts } from "../lib/net.ts";
import { ATTACKER_LIMITS, FLOOD_BOUND, docker, exec, inspect, openFrom, startFlood } from "../lib/fixtures/index.ts";
import { ListAnswer } from "../provision/relay/protocol.ts";
import { parseSshdT, renderDropIn, SSHD_DROP_IN, TUNNEL_SOURCES, tunnelConnectionSpec, tunnelDirectives } from "../provision/device/sshd.ts";
import { connectCommands, parseTimings, timingScript } from "./connect.ts";
import { containerCpuSeconds, containerMemoryBytes, containerPidStats, containerPss, containerPssBy } from "./procs.ts";
import { describeTrace, farmTrace } from "./farmTrace.ts";
import type { Row, Section } from "./results.ts";
import type { World } from "./world.ts";
import { med } from "./stats.ts";

/** Starts N agents in the farm, each after a random wait within `spreadMs`: the real agent script, one config dir each. */
export function farmLauncher(spreadMs: number): string {
  return `#!/bin/bash
while read -r i; do
  ( sleep "$(( RANDOM * ${spreadMs} / 32768 / 1000 )).$(printf %03d $(( RANDOM * ${spreadMs} / 32768 % 1000 )))"
    RTUNNEL_CONFIG_DIR=/farm/d$i exec /usr/local/bin/rtunnel-agent ) </dev/null >/farm/log/$i 2>&1 &
done </farm/devices
wait
`;
}

/** Ports in `ports` that listen on the relay's loopback (read from the relay's netns via /proc). */
async function listening(relayPid: number, ports: ReadonlySet<number>): Promise<number> {
  const open = listeningLoopbackPorts(await readFile(`/proc/${relayPid}/net/tcp`, "utf8"));
  return [...ports].filter((p) => open.has(p)).length;
}

const mib = (kib: number) => kib / 1024;

/**
 * CPU caps of the simulated devices. Real devices bring their own CPUs; here the farm shares
 * the relay's 2 cores, and uncapped, 1000 agents starting (about 0.45 CPU-s each: every program
 * started costs tens of ms on this machine) plus one sshd answering every device's probes held
 * the load above 600 and decided the run, not the relay (bench/RESULTS.md, scale findings).
 */
const FARM_CPUS = { agents: 1, sshd: 0.5 } as const;

const FRACTIONS = [0.5, 0.9, 1] as const;

interface Convergence {
  /** ms from the start to each fraction of the fleet up, with the 1-minute load average then */
  marks: Map<number, { ms: number; load: number }>;
  up: number;
  timeline: string[];
  peakLoad: number;
  /** samples taken, how many failed, the first failures' messages, the slowest sample (ms) */
  samples: number;
  failed: number;
  failures: string[];
  slowestMs: number;
  /** CPU seconds each container (and the machine) used in the phase */
  cpuUsed: CpuSnapshot;
  wallMs: number;
}

/** CPU seconds used so far by each named container, and by the whole machine (/proc/stat). */
type CpuSnapshot = Record<string, number>;

async function cpuSnapshot(containers: Record<string, string>): Promise<CpuSnapshot> {
  const out: CpuSnapshot = {};
  for (const [label, c] of Object.entries(containers)) out[label] = await containerCpuSeconds(c).catch(() => NaN);
  const [, ...ticks] = (await readFile("/proc/stat", "utf8")).split("\n")[0]!.trim().split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal: busy is all but idle and iowait, in USER_HZ (100)
  out.machine = ticks.slice(0, 8).reduce((a, b, i) => (i === 3 || i === 4 ? a : a + b!), 0) / 100;
  return out;
}

const cpuDelta = (from: CpuSnapshot, to: CpuSnapshot): CpuSnapshot => Object.fromEntries(Object.keys(to).map((k) => [k, to[k]! - from[k]!]));

/** "relay 12 s, agents 40 s, ... of 2 cores x 60 s": where a phase's CPU went. */
function describeCpu(used: CpuSnapshot, wallMs: number): string {
  const parts = Object.entries(used).map(([k, v]) => `${k} ${v.toFixed(0)} s`);
  return `CPU used: ${parts.join(", ")}, of ${os.cpus().length} cores x ${(wallMs / 1000).toFixed(0)} s`;
}

/** Gives up on a convergence whose samples keep failing: a count that cannot be read is not a count of zero. */
const MAX_FAILED_IN_A_ROW = 10;

/**
 * Samples `count` (how many of `n` devices are up) until all are, or `limitMs` passed. Records
 * when 50/90/100% were first reached, with the load average beside each, and a 10 s timeline.
 */
async function converge(n: number, limitMs: number, count: () => Promise<number>, cpu: () => Promise<CpuSnapshot>, progress: (line: string) => void, every = 1000): Promise<Convergence> {
  const cpu0 = await cpu();
  const t0 = Date.now();
  const marks = new Map<number, { ms: number; load: number }>();
  const timeline: string[] = [];
  let next = 0;
  let up = 0;
  let peakLoad = 0;
  let samples = 0;
  let failed = 0;
  let inARow = 0;
  let slowestMs = 0;
  const failures: string[] = [];
  while (Date.now() - t0 < limitMs) {
    const s0 = Date.now();
    samples++;
    try {
      up = await count();
      inARow = 0;
    } catch (e) {
      failed++;
      inARow++;
      const why = (e instanceof Error ? e.message : String(e)).trim().split("\n")[0]!;
      if (failures.length < 3) failures.push(`${((Date.now() - t0) / 1000).toFixed(0)} s: ${why}`);
      if (inARow >= MAX_FAILED_IN_A_ROW) throw new Error(`the online count failed ${inARow} times in a row (${failures.join("; ")})`, { cause: e });
    }
    slowestMs = Math.max(slowestMs, Date.now() - s0);
    const ms = Date.now() - t0;
    const load = os.loadavg()[0]!;
    peakLoad = Math.max(peakLoad, load);
    for (const f of FRACTIONS) if (up >= Math.ceil(f * n) && !marks.has(f)) marks.set(f, { ms, load });
    if (ms >= next) {
      timeline.push(`${(next / 1000).toFixed(0)} s: ${up} (load ${load.toFixed(0)})`);
      progress(`${timeline.at(-1)} of ${n}`);
      next += 10_000;
    }
    if (up >= n) break;
    await sleep(every);
  }
  return { marks, up, timeline, peakLoad, samples, failed, failures, slowestMs, cpuUsed: cpuDelta(cpu0, await cpu()), wallMs: Date.now() - t0 };
}

/** The attacker's most established connections on the relay at a sample, and how many samples there were. */
const describeAttackerOpen = (a: { samples: number; most: number; failed: number; firstError: string }) =>
  `at most ${a.most} of its connections established on the relay at once (${a.samples} samples a second apart, from before the restart to the storm's end` +
  (a.failed ? `; ${a.failed} could not be read: ${a.firstError})` : ")");

const describeMarks = (c: Convergence) =>
  `${FRACTIONS.map((f) => { const m = c.marks.get(f); return `${f * 100}% ${m ? `after ${(m.ms / 1000).toFixed(1)} s (load ${m.load.toFixed(1)})` : "not reached"}`; }).join(", ")}` +
  ` [${c.samples} samples, slowest ${(c.slowestMs / 1000).toFixed(1)} s${c.failed ? `, ${c.failed} failed: ${c.failures.join("; ")}` : ""}; ${describeCpu(c.cpuUsed, c.wallMs)}]`;

export interface ScaleOptions {
  tunnels: number;
  connectRounds: number;
  /** CPUs the relay container may use (docker --cpus) in the last restart: a relay short of CPU */
  relayCpus: number;
  /** also restart the relay under a pre-authentication flood (default true) */
  flood?: boolean;
  log: (l: string) => void;
}

export async function benchScale(w: World, o: ScaleOptions): Promise<Section> {
  const n = o.tunnels;
  const findings: string[] = [];
  const method: string[] = [];
  // The farm's network namespace is a plain host behind the home router (the agent image has
  // no `ip` to set its route); the agents run in the agent image, sharing that namespace.
  const farmNet = await w.net.attach(w.net.home, w.scope.name("farmnet"), ["--hostname", "farm", "--cpus", String(FARM_CPUS.sshd), "--entrypoint", "sleep", w.images.host, "infinity"]);
  // One sshd on the farm's port 22 answers for all N devices, so the relay's banner probe (what
  // `list` calls online) reads a real sshd through every tunnel. It carries enrollment's own
  // drop-in (rendered from this sshd's `sshd -T`, as on a device), and, because it stands for N
  // devices' sshds at once, admits N probes at a time.
  const sshdT = async (args: string[]) => parseSshdT((await exec(farmNet, ["sshd", "-T", ...args])).stdout);
  await exec(farmNet, ["ssh-keygen", "-A"]);
  const facts = { version: "", global: await sshdT([]), tunnel: await sshdT(["-C", tunnelConnectionSpec("pi", TUNNEL_SOURCES[0]!)]) };
  await exec(farmNet, ["sh", "-c", `cat >${SSHD_DROP_IN} && printf 'MaxStartups ${n}:30:${2 * n}\\n' >/etc/ssh/sshd_config.d/farm.conf && /usr/sbin/sshd`], { input: renderDropIn(tunnelDirectives(facts)) });
  const farm = await w.scope.run(["--name", w.scope.name("farm"), "--network", `container:${farmNet}`, "--cpus", String(FARM_CPUS.agents), "--shm-size", "256m", "--entrypoint", "sleep", w.images.agent, "infinity"]);
  const farmSh = (script: string, timeoutMs = 600_000) => exec(farm, ["bash", "-c", script], { timeoutMs });
  // Keys, made in the farm (one per device), then registered one add-device each.
  let t = Date.now();
  const pubs = (await farmSh(`mkdir -p /farm/log && cd /farm && for i in $(seq 1 ${n}); do mkdir -p d$i && ssh-keygen -q -t ed25519 -N '' -C dev$i -f d$i/id_ed25519 && echo "$i $(cut -d' ' -f1,2 d$i/id_ed25519.pub)"; done`)).stdout
    .split("\n").filter(Boolean).map((l) => l.split(" ")).map(([i, type, b]) => ({ i: Number(i), key: `${type} ${b}` }));
  const keygenS = (Date.now() - t) / 1000;
  if (pubs.length !== n) throw new Error(`made ${pubs.length} of ${n} device keys`);
  t = Date.now();
  // As many multiplexed admin connections as the admin key may hold, less lane 0 (the world's own).
  const lanes = RELAY_CONNECTION_LIMITS.admin.max - 1;
  const ports = new Map<number, number>();
  await Promise.all(Array.from({ length: lanes }, async (_, lane) => {
    for (let k = lane; k < n; k += lanes) {
      const { i, key } = pubs[k]!;
      const r = await w.admin(["add-device", `farm-${String(i).padStart(4, "0")}`], `${key}\n`, lane + 1);
      if (r.code !== 0) throw new Error(`add-device farm-${i}: ${r.stderr.trim()}`);
      ports.set(i, (JSON.parse(r.stdout) as { port: number }).port);
    }
  }));
  const registerS = (Date.now() - t) / 1000;
  o.log(`scale: ${n} keys made in ${keygenS.toFixed(0)} s, registered in ${registerS.toFixed(0)} s`);
  const portSet = new Set(ports.values());

  // Idle relay: memory and the laptop's connect time (cold through the relay, and direct).
  const relayPid = Number(await inspect(w.relay, "{{.State.Pid}}"));
  const idlePss = await containerPss(w.relay);
  const idleBy = await containerPssBy(w.relay);
  const idleMem = await containerMemoryBytes(w.relay);
  const cmds = connectCommands(w);
  const conn = async () => {
    const r = await w.onLaptop(timingScript({ direct: cmds.direct!, cold: cmds.cold! }, o.connectRounds));
    return parseTimings(r.stdout);
  };
  const idleConnect = await conn();

  // All devices up: each agent's files as enrollment writes them (lib/contract/agent.ts).
  const relay = { host: w.relayIp, port: RELAY_CONTAINER_PORT };
  const known = renderAgentKnownHosts(relay, parsePublicKey(w.relayHostKeyPub));
  const files = [...ports].map(([i, p]) => `cat > /farm/d${i}/rtunnel.env <<'EOF'\n${renderAgentEnv({ relay, forwardPort: p })}EOF\ncat > /farm/d${i}/known_hosts <<'EOF'\n${known}EOF`).join("\n");
  await exec(farm, ["bash", "-c", "cat > /farm/files.sh && bash /farm/files.sh && chmod 600 /farm/d*/*"], { input: `${files}\n` });
  const spreadMs = Math.min(30_000, n * 20);
  await exec(farm, ["sh", "-c", "cat > /farm/launch && chmod +x /farm/launch"], { input: farmLauncher(spreadMs) });
  await exec(farm, ["sh", "-c", "cat > /farm/devices"], { input: `${[...ports.keys()].join("\n")}\n` });
  t = Date.now();
  await docker(["exec", "-d", farm, "/farm/launch"]);
  // Up means what `status` calls online: the relay read the device's sshd banner through the tunnel.
  const online = async () => {
    const r = await w.admin(["list"]);
    if (r.code !== 0) throw new Error(`list: exit ${r.code}: ${r.stderr.trim().replace(/\s*\n\s*/g, " ") || "(nothing on stderr)"}`);
    return ListAnswer.parse(JSON.parse(r.stdout)).filter((l) => l.kind === "device" && l.name.startsWith("farm-") && l.online).length;
  };
  const cpu = (more: Record<string, string> = {}) => cpuSnapshot({ relay: w.relay, agents: farm, "devices' sshd": farmNet, ...more });
  const rampLimit = spreadMs + 900_000; // starting 1000 agents here costs minutes of CPU on its own
  const ramp = await converge(n, rampLimit, online, () => cpu(), (l) => o.log(`scale: ramp ${l}`));
  let up = ramp.up;
  const rampS = (Date.now() - t) / 1000;
  o.log(`scale: ${up} of ${n} tunnels up (online in list) after ${rampS.toFixed(0)} s (starts spread over ${spreadMs / 1000} s): ${describeMarks(ramp)}`);
  if (up < n) findings.push(`Only ${up} of ${n} tunnels came up within ${(rampLimit / 1000).toFixed(0)} s of starting the farm.`);
  up = await listening(relayPid, portSet);
  await sleep(5000); // let the last sessions settle before measuring memory
  const loadPss = await containerPss(w.relay);
  const loadBy = await containerPssBy(w.relay);
  const loadMem = await containerMemoryBytes(w.relay);
  const pidsLoaded = await containerPidStats(w.relay);
  const loadConnect = await conn();

  // Relay restart: how long until every tunnel is back, first alone, then with a flood of
  // connections that never authenticate from an attacker's own address (its own site in the
  // topology, CPU capped so the run measures connection slots, not a starved machine).
  const before = await containerPidStats(w.relay);
  const stormLimit = 600_000; // long enough to see a slow storm converge, not only miss 60 s
  const restartTrouble: string[] = [];
  // Under a storm dockerd can give up waiting for the stopped relay's exit ("did not receive an
  // exit event"): recorded, and the relay started again, so the phase is still measured.
  const restartRelay = async () => {
    const r = await docker(["restart", "-t", "10", w.relay], { check: false, timeoutMs: 300_000 });
    if (r.code === 0) return;
    restartTrouble.push(`\`docker restart\` failed: ${r.stderr.trim().split("\n").pop()}`);
    for (let i = 0; i < 60 && (await inspect(w.relay, "{{.State.Status}}").catch(() => "?")) === "running"; i++) await sleep(1000);
    await docker(["start", w.relay]);
  };
  // What the agents did in a phase, 10 s at a time, from their own logs.
  const trace = async (sinceMs: number) => describeTrace(farmTrace((await farmSh("cat /farm/log/*")).stdout, sinceMs, 10), 10);
  const restartAt = Date.now();
  await restartRelay();
  const plain = { storm: await converge(n, stormLimit, online, () => cpu(), (l) => o.log(`scale: restart ${l}`)) };
  const plainTrace = await trace(restartAt);
  o.log(`scale: restart: ${describeMarks(plain.storm)}`);
  o.log(`scale: restart, what the agents did: ${plainTrace}`);
  const underFlood = o.flood === false ? undefined : await restartUnderFlood();
  async function restartUnderFlood() {
    await sleep(10_000);
    const attackSite = await w.net.addSite("attacker");
    const attacker = await w.net.attach(attackSite, w.scope.name("attacker"), [...ATTACKER_LIMITS, "--entrypoint", "sleep", w.images.host, "infinity"]);
    const flood = startFlood(attacker, attackSite.routerWanIp, { host: w.relayIp });
    let stormDone = false;
    // The attacker's established connections in the relay's socket table, once a second from
    // before the restart to the storm's end; a sample that could not be read is counted as
    // such, never as zero.
    const attackerOpen = { samples: 0, most: 0, failed: 0, firstError: "" };
    const sampleAttacker = (async () => {
      while (!stormDone) {
        try {
          attackerOpen.most = Math.max(attackerOpen.most, await openFrom(w.relay, attackSite.routerWanIp));
          attackerOpen.samples++;
        } catch (e) {
          attackerOpen.failed++;
          attackerOpen.firstError ||= (e as Error).message.split("\n")[0]!;
        }
        await sleep(1000);
      }
    })();
    await sleep(5000); // the flood holds its slots before the relay goes down and after
    const floodRestartAt = Date.now();
    await restartRelay();
    const victims = { laptopTries: 0, laptopOk: 0, adminTries: 0, adminOk: 0, attackerOpen };
    const probeVictims = (async () => {
      while (!stormDone) {
        victims.laptopTries++;
        if ((await w.onLaptop("ssh -o BatchMode=yes -o ConnectTimeout=30 raspi true", 90_000)).code === 0) victims.laptopOk++;
        victims.adminTries++;
        if ((await w.admin(["host-key"])).code === 0) victims.adminOk++;
        await sleep(2000);
      }
    })();
    const storm = await converge(n, stormLimit, online, () => cpu({ attacker }), (l) => o.log(`scale: restart under a flood ${l}`));
    stormDone = true;
    await Promise.all([probeVictims, sampleAttacker]);
    const sent = await flood.stop();
    const seconds = (Date.now() - floodRestartAt) / 1000;
    await docker(["rm", "-f", attacker], { check: false });
    const agents = await trace(floodRestartAt);
    o.log(`scale: restart under a flood (${sent} connections in ${seconds.toFixed(0)} s): ${describeMarks(storm)}; laptop ${victims.laptopOk}/${victims.laptopTries}, admin ${victims.adminOk}/${victims.adminTries}`);
    return { storm, victims, sent, seconds, agents };
  }
  // The same restart with the relay short of CPU: its container capped (a small instance, or
  // a host busy with something else), so the storm must drain at what the relay can admit.
  await sleep(10_000);
  await docker(["update", "--cpus", String(o.relayCpus), w.relay]);
  const cappedAt = Date.now();
  let capped: { storm: Convergence };
  try {
    await restartRelay();
    capped = { storm: await converge(n, stormLimit, online, () => cpu(), (l) => o.log(`scale: restart, relay capped at ${o.relayCpus} CPU: ${l}`)) };
  } finally {
    await docker(["update", "--cpus", "0", w.relay], { check: false });
  }
  const cappedTrace = await trace(cappedAt);
  o.log(`scale: restart, relay capped at ${o.relayCpus} CPU: ${describeMarks(capped.storm)}`);
  o.log(`scale: restart, relay capped, what the agents did: ${cappedTrace}`);
  const allBackMs = plain.storm.marks.get(1)?.ms;
  const floodAllBackMs = underFlood?.storm.marks.get(1)?.ms;
  const pidsStorm = await containerPidStats(w.relay);
  const relayLog = await docker(["logs", "--since", String(Math.floor(restartAt / 1000)), w.relay], { check: false });
  const logText = relayLog.stdout + relayLog.stderr;
  const count = (re: RegExp) => (logText.match(re) ?? []).length;
  const drops = count(/drop connection #\d+/g);
  const penalties = count(/penalty/gi);
  const forkFail = count(/fork|Resource temporarily unavailable/gi);
  const samples = (re: RegExp) => [...new Set(logText.split("\n").filter((l) => re.test(l)).map((l) => l.replace(/#\d+/g, "#N").replace(/port \d+/g, "port P").replace(/\b\d+(\.\d+){3}\b/g, "ADDR")))].slice(0, 3);
  const penaltyLines = samples(/penalt/i);
  const dropLines = samples(/drop connection|MaxStartups/);
  const farmAttempts = (await farmSh("cat /farm/log/* | grep -c ' rtunnel: lost: ' || true")).stdout.trim();
  // Why the agents' sessions ended, most common first (addresses and ports folded).
  const lostReasons = (await farmSh("cat /farm/log/* | sed -n 's/.* rtunnel: lost: \\(.*\\) (ssh exit \\([0-9]*\\).*/\\1 (exit \\2)/p' | sed -E 's/[0-9]+(\\.[0-9]+){3}/ADDR/g; s/port [0-9]+/port P/g' | sort | uniq -c | sort -rn | head -6")).stdout
    .split("\n").map((l) => l.trim()).filter(Boolean);
  const handshakes = { timedOut: count(/Timeout before authentication/g), postponed: count(/Postponed publickey/g), accepted: count(/Accepted publickey/g) };
  await docker(["rm", "-f", farm, farmNet], { check: false });
  // The idle relay once more, after the farm is gone: the baseline is both idle measurements,
  // so a burst of other load on this machine before the farm does not decide the ratio alone.
  await sleep(15_000); // the relay notices the dead sessions within 15 s
  const idleAfter = await conn();
  const idleCold = [...(idleConnect.cold ?? []), ...(idleAfter.cold ?? [])];
  const idleDirect = [...(idleConnect.direct ?? []), ...(idleAfter.direct ?? [])];

  const perTunnelKiB = (loadPss.kib - idlePss.kib) / n;
  const cgroupMiB = loadMem / 2 ** 20;
  const limitMiB = (2048 * n) / 1000;
  if (cgroupMiB > limitMiB) {
    findings.push(`PSS meets the memory goal, but the kernel's own accounting of the relay container (memory cgroup usage: process memory plus kernel memory such as socket buffers, page tables and kernel stacks, plus the /run tmpfs) is ${cgroupMiB.toFixed(0)} MiB, ${(((cgroupMiB - limitMiB) / limitMiB) * 100).toFixed(0)}% over ${limitMiB.toFixed(0)} MiB: size the instance by this figure, not by PSS.`);
  }
  const byKind = [...loadBy]
    .map(([name, e]) => ({ name, count: e.count - (idleBy.get(name)?.count ?? 0), kib: e.kib - (idleBy.get(name)?.kib ?? 0) }))
    .filter((e) => e.count > 0 || e.kib > 1024)
    .sort((a, b) => b.kib - a.kib);
  findings.push(`Where the relay's memory goes with ${up} tunnels (PSS added over idle, by process): ${byKind.map((e) => `${e.name}: +${e.count} processes, +${(e.kib / 1024).toFixed(1)} MiB (${(e.kib / Math.max(1, e.count)).toFixed(0)} KiB each)`).join("; ")}. OpenSSH keeps two processes per authenticated connection (the root monitor and the unprivileged session process); that, not the forwarding, is the cost per tunnel.`);
  const rows: Row[] = [
    {
      name: `relay memory with ${n} tunnels up (PSS summed over the relay container's ${loadPss.processes} processes)`, unit: "MiB", values: [mib(loadPss.kib)],
      baseline: { name: `idle relay (1 tunnel, ${idlePss.processes} processes)`, values: [mib(idlePss.kib)] },
      goal: { text: "all 1000 tunnels in at most 2 GiB", on: "value", kind: "max", limit: (2048 * n) / 1000 },
      note: n === 1000 ? "" : `goal scaled to ${n} tunnels: 2 GiB x ${n}/1000`,
    },
    { name: "relay memory per tunnel: (PSS loaded - idle) / N", unit: "KiB", values: [perTunnelKiB] },
    { name: CGROUP_ROW, unit: "MiB", values: [loadMem / 2 ** 20], baseline: { name: "idle", values: [idleMem / 2 ** 20] } },
    {
      name: `laptop cold connect while ${up} tunnels are up`, unit: "ms", values: loadConnect.cold ?? [],
      baseline: { name: "same, idle relay (before the farm started and after it was removed)", values: idleCold },
      goal: { text: "at most 1.2x the idle relay's", on: "ratio", kind: "max", limit: 1.2 },
    },
    { name: "control: direct connect while the farm runs", unit: "ms", values: loadConnect.direct ?? [], baseline: { name: "direct, before and after the farm", values: idleDirect }, note: "how much the farm's load alone slows this machine" },
  ];
  const ms = (c: Convergence, f: number) => (c.marks.get(f)?.ms ?? NaN) / 1000;
  rows.push({
    name: `farm start → all ${n} devices online (banner through the tunnel)`, unit: "s", values: [ms(ramp, 1)],
    baseline: { name: "time to the first 50% online", values: [ms(ramp, 0.5)] },
    note: `starts spread over ${spreadMs / 1000} s; peak load ${ramp.peakLoad.toFixed(0)}`,
  });
  const relayCap = ` (relay capped at ${o.relayCpus} CPU)`;
  const storms = [{ label: "relay restart", c: plain.storm, done: allBackMs, what: "the relay restart", goal: true }];
  if (underFlood) storms.push({ label: "relay restart during a pre-auth flood from another address", c: underFlood.storm, done: floodAllBackMs, what: "the restart during the flood", goal: true });
  storms.push({ label: `relay restart${relayCap}`, c: capped.storm, done: capped.storm.marks.get(1)?.ms, what: `the restart${relayCap}`, goal: false });
  for (const { label, c, done, goal } of storms) {
    if (done !== undefined) {
      rows.push({
        name: `${label} → all ${n} devices online`, unit: "s", values: [done / 1000],
        baseline: { name: "time to the first 50% online", values: [ms(c, 0.5)] },
        ...(goal ? { goal: { text: "60 s or less, no device permanently failed", on: "value", kind: "max", limit: 60 } } : {}),
        note: `90% after ${ms(c, 0.9).toFixed(0)} s; peak load ${c.peakLoad.toFixed(0)}${goal ? "" : "; no goal: it must converge, at what a relay with this much CPU admits"}`,
      });
    } else {
      findings.push(`${label}: only ${c.up} of ${n} devices were online within ${stormLimit / 1000} s: goal missed.`);
    }
  }
  for (const { what: label, c } of storms) {
    const relayCpu = c.cpuUsed.relay ?? NaN;
    rows.push({
      name: `relay CPU per device in ${label} (the relay container's CPU time in the phase / ${n})`, unit: "ms", values: [(relayCpu / n) * 1000],
      note: `${relayCpu.toFixed(0)} s in all: ${(relayCpu / 2).toFixed(0)} s of a relay host's 2 vCPUs; the simulated devices used ${(c.cpuUsed.agents ?? NaN).toFixed(0)} s of this machine's CPU beside it`,
    });
  }
  findings.push(
    `Ramp (farm start): ${describeMarks(ramp)}. Timeline: ${ramp.timeline.join(", ")}.`,
    `Relay restart: ${describeMarks(plain.storm)}. Timeline: ${plain.storm.timeline.join(", ")}. What the agents did (from their logs): ${plainTrace}.`,
    `Relay restart${relayCap}: ${describeMarks(capped.storm)}. Timeline: ${capped.storm.timeline.join(", ")}. What the agents did: ${cappedTrace}.`,
    ...(underFlood ? [`Relay restart during the flood: ${describeMarks(underFlood.storm)}. Timeline: ${underFlood.storm.timeline.join(", ")}. What the agents did: ${underFlood.agents}. The attacker (its own site, one address, CPU capped at ${ATTACKER_LIMITS[1]}) opened ${underFlood.sent} connections in ${underFlood.seconds.toFixed(0)} s, ${describeAttackerOpen(underFlood.victims.attackerOpen)}; meanwhile the office laptop's \`ssh raspi true\` succeeded ${underFlood.victims.laptopOk} of ${underFlood.victims.laptopTries} times and the operator's admin call ${underFlood.victims.adminOk} of ${underFlood.victims.adminTries}.`] : []),
    ...restartTrouble,
    `Handshakes in the relay's log since the first restart: ${handshakes.accepted} accepted, ${handshakes.postponed} key queries answered (Postponed publickey), ${handshakes.timedOut} timed out before authentication (LoginGraceTime).`,
    `Why the agents' sessions ended, since the farm started (count, reason, ssh's exit code): ${lostReasons.join("; ")}.`,
    `The relay's log since the first restart has ${drops} MaxStartups drops ("drop connection #"), ${penalties} PerSourcePenalties lines and ${forkFail} fork failures; the farm's clients made ${farmAttempts} connection attempts that ended (all of them, since the farm started).`,
    ...(penaltyLines.length ? [`PerSourcePenalties lines in the relay's log (all devices share the home router's address, so a penalty there blocks every one of them): ${penaltyLines.map((l) => `\`${l.replace(/^.*?sshd/, "sshd")}\``).join("; ")}.`] : []),
    ...(dropLines.length ? [`MaxStartups lines: ${dropLines.map((l) => `\`${l.replace(/^.*?sshd/, "sshd")}\``).join("; ")}.`] : []),
    `Relay pids: limit ${pidsLoaded.max}, ${pidsLoaded.current} in use with ${up} tunnels (${((pidsLoaded.current - 4) / Math.max(1, up)).toFixed(1)} per tunnel), peak ${pidsStorm.peak ?? "?"}; forks refused at the limit: ${before.refused} before the restart, ${pidsStorm.refused} after it.`,
    `Registration: ${n} add-device calls took ${registerS.toFixed(0)} s over ${lanes} multiplexed admin connections (${((registerS * 1000) / n).toFixed(0)} ms each); the relay has no bulk path, and each add re-renders every key file (O(N) per add). Making the ${n} keys took ${keygenS.toFixed(0)} s.`,
  );
  const loadRatio = med(loadConnect.cold ?? []) / med(idleCold);
  const directRatio = med(loadConnect.direct ?? []) / med(idleDirect);
  if (loadRatio > 1.2) {
    findings.push(`Connect under load is ${loadRatio.toFixed(2)}x idle while direct ssh on the same machine slowed ${directRatio.toFixed(2)}x: the ${n} simulated devices run on the same 2 cores as the relay (their keepalives every 5 s, in both directions), so part of this is the farm's own CPU, not the relay's.`);
  }
  method.push(
    `The simulated devices are CPU-capped (agents ${FARM_CPUS.agents} CPU, their one sshd ${FARM_CPUS.sshd} CPU; the relay is not), so the relay's CPU, not the simulator's, is measured.`,
    `Devices: ${n} keys (ed25519, made in the farm container), registered by \`add-device farm-NNNN\` over ${lanes} multiplexed admin connections; ${n} copies of the real device agent (images/rtunnel/agent: its ssh options, its backoff, its log) in one farm container from the agent image behind the home router (one NAT source address for all), each with its own /etc/rtunnel-like directory written by the same renderers enrollment uses, starts spread at random over ${spreadMs / 1000} s.`,
    "A device counts as up when the relay's `list` says online: its port listens on the relay's loopback and the relay read an SSH banner through it (the farm runs one sshd that answers for all devices, with loopback exempt from penalties as enrollment's drop-in sets it). Sampled once a second (each sample is one `list`, whose probes are cached per listener: 5 min for an answer, 2 s for a refusal, 30 s for a timeout).",
    "Memory: PSS from /proc/PID/smaps_rollup summed over every process in the relay container's cgroup, once idle (the raspi's tunnel only) and once with all tunnels up; per tunnel = (loaded - idle) / N. Single measurements (1 run).",
    `Connect: ${o.connectRounds} rounds of cold \`ssh raspi true\` and direct, interleaved, before the farm starts and again after it is removed (idle: both pooled) and with all tunnels up; direct is the control for the machine's own load.`,
    `Restart: \`docker restart -t 10\` of the relay with all devices online, then the online count until all are back (limit ${stormLimit / 1000} s); then the same again while an attacker floods: a container on its own site (own router, own address), \`--cpus ${ATTACKER_LIMITS[1]}\`, opening connections that send nothing as fast as it can (lib/fixtures/flood.ts, bounded to ${FLOOD_BOUND} connections and stopped when the storm ends), aimed only at the test relay; the office laptop's \`ssh raspi true\` and an admin call are tried in turn through the storm; then once more with the relay container capped at ${o.relayCpus} CPU (\`docker update --cpus\`: a relay short of CPU). 1 run each. 50/90/100% with the 1-minute load average at that moment. What the agents did comes from their own logs (attempts, tunnels up, and why the others failed, per 10 s).`,
  );
  return { id: "scale", title: `Scale: ${n} device tunnels on one relay`, method, rows, findings, tunnelsUp: up };
}
