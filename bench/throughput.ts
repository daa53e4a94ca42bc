// throughput: N bytes from the raspi to the laptop (`ssh raspi 'head -c N /dev/zero' | wc -c`,
// what `scp raspi:file .` does minus the disk), through the relay vs straight to the same sshd,
// interleaved, with the links unlimited and with both sites' uplinks limited by tc.
import { timingScript, parseTimings } from "./connect.ts";
import { cpuSampler } from "./procs.ts";
import { limitLinks, type World } from "./world.ts";
import type { Profile, Row, Section } from "./results.ts";
import { med } from "./stats.ts";

function commands(bytes: number): Record<string, string> {
  const check = `| { n=$(wc -c); [ "$n" = ${bytes} ] || { echo "got $n bytes" >&2; false; }; }`;
  return {
    direct: `ssh -o BatchMode=yes raspi-direct 'head -c ${bytes} /dev/zero' ${check}`,
    relay: `ssh -o BatchMode=yes raspi 'head -c ${bytes} /dev/zero' ${check}`,
  };
}

const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

async function measure(w: World, bytes: number, runs: number): Promise<{ direct: number[]; relay: number[] }> {
  const r = await w.onLaptop(timingScript(commands(bytes), runs), 30 * 60_000);
  const fails = r.stdout.split("\n").filter((l) => l.startsWith("FAIL"));
  if (fails.length) throw new Error(`transfers failed: ${fails.slice(0, 3).join("; ")}`);
  const t = parseTimings(r.stdout);
  return { direct: (t.direct ?? []).map((ms) => mbps(bytes, ms)), relay: (t.relay ?? []).map((ms) => mbps(bytes, ms)) };
}

async function profile(w: World, kind: "direct" | "relay", bytes: number, label: string): Promise<Profile> {
  const sampler = cpuSampler({ laptop: w.laptop, relay: w.relay, raspi: w.raspi, "agent (raspi)": w.agent }, 100);
  const t0 = performance.now();
  const r = await w.onLaptop(commands(bytes)[kind]!, 30 * 60_000);
  const wall = (performance.now() - t0) / 1000;
  const lines = await sampler.stop();
  if (r.code !== 0) throw new Error(`profiled ${kind} transfer failed: ${r.stderr.trim()}`);
  return { label, wallSeconds: wall, lines };
}

export async function benchThroughput(w: World, o: { bytes: number; runs: number; rate: string; netem: boolean }): Promise<Section> {
  const size = `${Math.round(o.bytes / 2 ** 20)} MiB`;
  const rows: Row[] = [];
  const profiles: Profile[] = [];
  const findings: string[] = [];
  await limitLinks(w, undefined);
  const free = await measure(w, o.bytes, o.runs);
  rows.push({ name: `${size}, links unlimited`, unit: "MB/s", values: free.relay, baseline: { name: "direct", values: free.direct } });
  profiles.push(await profile(w, "relay", o.bytes, `one ${size} transfer through the relay, links unlimited`));
  profiles.push(await profile(w, "direct", o.bytes, `one ${size} transfer direct, links unlimited`));
  await limitLinks(w, o.rate);
  try {
    const lim = await measure(w, o.bytes, o.runs);
    rows.push({
      name: `${size}, uplinks limited to ${o.rate} (tc tbf)${o.netem ? "" : ", no added delay (no sch_netem)"}`,
      unit: "MB/s", values: lim.relay, baseline: { name: "direct", values: lim.direct },
      goal: { text: "at least 0.9x direct (limited links)", on: "ratio", kind: "min", limit: 0.9 },
    });
    const ratio = med(lim.relay) / med(lim.direct);
    if (ratio < 0.9) {
      findings.push(`Limited: the relay path reached ${med(lim.relay).toFixed(1)} MB/s against ${med(lim.direct).toFixed(1)} MB/s direct; see the unlimited profile for which process saturates a core.`);
    }
  } finally {
    await limitLinks(w, undefined);
  }
  const top = (p: Profile) => [...p.lines].sort((a, b) => b.cpuSeconds - a.cpuSeconds)[0];
  const relayTop = top(profiles[0]!);
  const relayCpu = profiles[0]!.lines.reduce((s, l) => s + l.cpuSeconds, 0);
  const directCpu = profiles[1]!.lines.reduce((s, l) => s + l.cpuSeconds, 0);
  const per = (cpu: number) => (cpu / (o.bytes / 1e9)).toFixed(1);
  findings.push(
    `Unlimited, every byte through the relay is encrypted and decrypted three times (end to end raspi sshd → laptop ssh, inside the tunnel agent's ssh → relay sshd, inside the relay's jump session → the laptop's ProxyJump ssh) instead of once, and here all of it runs on the same 2 cores: the relay transfer used ${relayCpu.toFixed(1)} CPU-s (${per(relayCpu)} CPU-s per GB) against ${directCpu.toFixed(1)} CPU-s (${per(directCpu)} per GB) direct; the busiest process was ${relayTop ? `${relayTop.process} in ${relayTop.container} (${relayTop.cpuSeconds.toFixed(1)} CPU-s in ${profiles[0]!.wallSeconds.toFixed(1)} s)` : "not seen"}. On real hardware the three parties have their own CPUs, so this ratio is a floor for one machine, not what a user sees; the limited row is the one that models a user's link.`,
  );
  return {
    id: "throughput",
    title: "Throughput: raspi → laptop",
    method: [
      `${o.runs} runs per path and link setting, relay and direct alternating; ${size} of /dev/zero sent by the raspi's sshd (\`ssh raspi 'head -c N /dev/zero' | wc -c\`, byte count checked), timed inside the laptop container; figure = MB/s (10^6 bytes/s), ratio = relay / direct.`,
      "Paths as in Connect: through the relay, raspi → home router → `internet` bridge → relay → `internet` bridge → office router → laptop; direct, raspi → home bridge → laptop.",
      `Limited: \`tc qdisc add dev IF root tbf rate ${o.rate} burst 128kb latency 50ms\` on every interface of the raspi and of the laptop (their links' egress): the data leaves the raspi through its limited link on both paths, the ACKs leave the laptop through a limited link on both paths.`,
      o.netem
        ? "Delay: sch_netem was available; see the row names for what was applied."
        : "Delay: this kernel has no sch_netem (`tc qdisc add ... netem` says \"Specified qdisc kind is unknown\"; CONFIG_NET_SCH_NETEM is not set, and neither fq nor cake), so the 30 ms RTT of the issue could not be added: the limited rows are rate-limited only. With an added RTT both paths would wait the same per-window time on the same bottleneck, so the ratio should move toward 1, not away; that is an expectation, not a measurement.",
      "Profiles: one extra transfer per path, CPU time per process read from /proc every 200 ms (user + system time of each process; kernel forwarding in the routers and the bridges is not attributed to any process).",
    ],
    rows,
    profiles,
    findings,
  };
}
