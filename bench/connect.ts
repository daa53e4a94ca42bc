// connect: `ssh raspi true` through the relay, cold and with the relay hop's connection reused
// (ControlMaster/ControlPersist, as provision/sshConfig.ts renders it when multiplexing is on),
// against `ssh` straight to the same sshd. Timed inside the laptop container (no docker exec in
// the figure), the three kinds interleaved in every round, the order rotated round to round.
import { containerCpuSeconds } from "./procs.ts";
import type { Profile, Row, Section } from "./results.ts";
import { RELAY_ALIAS_MUX_CONFIG, type World } from "./world.ts";
import { med } from "./stats.ts";

export const KINDS = ["direct", "cold", "reused", "hop"] as const;
export type Kind = (typeof KINDS)[number];

/** Parses the laptop script's `KIND MICROSECONDS` lines into milliseconds per kind. */
export function parseTimings(stdout: string): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const line of stdout.split("\n")) {
    const m = /^([a-z-]+) (\d+)$/.exec(line.trim());
    if (m) (out[m[1]!] ??= []).push(Number(m[2]) / 1000);
  }
  return out;
}

/** A bash script that times each command `rounds` times, rotating their order each round. */
export function timingScript(commands: Record<string, string>, rounds: number): string {
  const names = Object.keys(commands);
  const cases = names.map((n) => `    ${n}) ${commands[n]} >/dev/null 2>/tmp/err-${n} || { echo "FAIL ${n} $(tail -n1 /tmp/err-${n})"; continue; } ;;`).join("\n");
  return [
    "set -u",
    `kinds=(${names.join(" ")})`,
    `for ((i = 0; i < ${rounds}; i++)); do`,
    "  for ((j = 0; j < ${#kinds[@]}; j++)); do",
    "    k=${kinds[$(( (i + j) % ${#kinds[@]} ))]}",
    "    t0=$(date +%s%N)",
    "    case $k in",
    cases,
    "    esac",
    "    t1=$(date +%s%N)",
    '    echo "$k $(( (t1 - t0) / 1000 ))"',
    "  done",
    "done",
  ].join("\n");
}

export function connectCommands(w: World): Record<string, string> {
  const ssh = "ssh -o BatchMode=yes";
  return {
    direct: `${ssh} raspi-direct true`,
    cold: `${ssh} raspi true`,
    reused: `${ssh} -F ${RELAY_ALIAS_MUX_CONFIG} raspi true`,
    // The relay hop alone: connect to the relay, open the forward, read the raspi's banner, leave.
    hop: `${ssh} -W 127.0.0.1:${w.forwardPort} rtunnel-relay </dev/null`,
  };
}

export async function measureConnect(w: World, rounds: number): Promise<Record<string, number[]>> {
  // Warm up every path once, and start the relay hop's control master for "reused".
  const warm = await w.onLaptop(`ssh -o BatchMode=yes raspi-direct true && ssh -o BatchMode=yes raspi true && ssh -o BatchMode=yes -F ${RELAY_ALIAS_MUX_CONFIG} raspi true && ssh -F ${RELAY_ALIAS_MUX_CONFIG} -O check rtunnel-relay`);
  if (warm.code !== 0) throw new Error(`connect warm-up failed: ${warm.stderr.trim()}`);
  const r = await w.onLaptop(timingScript(connectCommands(w), rounds));
  const fails = r.stdout.split("\n").filter((l) => l.startsWith("FAIL"));
  if (fails.length) throw new Error(`connect runs failed: ${fails.slice(0, 3).join("; ")}`);
  return parseTimings(r.stdout);
}

export function connectRows(t: Record<string, number[]>, label = ""): Row[] {
  const direct = { name: "direct ssh, same round", values: t.direct ?? [] };
  return [
    { name: `cold: ssh raspi true${label}`, unit: "ms", values: t.cold ?? [], baseline: direct, goal: { text: "cold at most 1.5x direct", on: "ratio", kind: "max", limit: 1.5 } },
    { name: `reused relay hop (ControlPersist): ssh raspi true${label}`, unit: "ms", values: t.reused ?? [], baseline: direct, goal: { text: "reused at most 1.1x direct", on: "ratio", kind: "max", limit: 1.1 } },
    { name: `relay hop alone: ssh -W to the forward, read the banner${label}`, unit: "ms", values: t.hop ?? [], baseline: direct, note: "where cold's extra time goes" },
  ];
}

/** CPU per connect and per container (which hop pays), over `n` connects of one kind in a row. */
async function cpuPerConnect(w: World, kind: string, command: string, n: number): Promise<Profile> {
  const parties: Record<string, string> = { laptop: w.laptop, relay: w.relay, raspi: w.raspi, "agent (raspi)": w.agent };
  const before = await Promise.all(Object.values(parties).map((c) => containerCpuSeconds(c)));
  const t0 = performance.now();
  const r = await w.onLaptop(`for i in $(seq ${n}); do ${command} >/dev/null || exit 1; done`);
  const wall = (performance.now() - t0) / 1000;
  if (r.code !== 0) throw new Error(`${kind} connects failed: ${r.stderr.trim()}`);
  const after = await Promise.all(Object.values(parties).map((c) => containerCpuSeconds(c)));
  return {
    label: `${n} ${kind} connects in a row, per connect (all processes of each container, cpuacct; wall per connect)`,
    wallSeconds: wall / n,
    lines: Object.keys(parties).map((name, i) => ({ container: name, process: "all", cpuSeconds: (after[i]! - before[i]!) / n })),
  };
}

export async function benchConnect(w: World, rounds: number): Promise<Section> {
  const t = await measureConnect(w, rounds);
  const cmds = connectCommands(w);
  const profiles = [await cpuPerConnect(w, "cold", cmds.cold!, 10), await cpuPerConnect(w, "direct", cmds.direct!, 10), await cpuPerConnect(w, "reused", cmds.reused!, 10)];
  const rows = connectRows(t);
  const findings: string[] = [];
  const direct = med(t.direct), reused = med(t.reused), hop = med(t.hop);
  const cpuOf = (p: Profile | undefined, c: string) => ((p?.lines.find((l) => l.container === c)?.cpuSeconds ?? NaN) * 1000).toFixed(0);
  const [pc, pd] = profiles;
  findings.push(`CPU per connect (profiles below): cold, laptop ${cpuOf(pc, "laptop")} ms + relay ${cpuOf(pc, "relay")} ms + raspi ${cpuOf(pc, "raspi")} ms + agent ${cpuOf(pc, "agent (raspi)")} ms; direct, laptop ${cpuOf(pd, "laptop")} ms + raspi ${cpuOf(pd, "raspi")} ms. The relay hop costs a second ssh process on the laptop and a full sshd connection (privileged monitor, unprivileged child, key lookup) on the relay.`);
  const coldRatios = (t.cold ?? []).map((c, i) => c / (t.direct?.[i] ?? NaN));
  const coldRatio = med(coldRatios);
  const verdict = coldRatio > 1.5
    ? `Cold misses the 1.5x goal (${coldRatio.toFixed(2)}x)`
    : coldRatio > 1.35
      ? `Cold meets the 1.5x goal with little margin (${coldRatio.toFixed(2)}x; single rounds ${Math.min(...coldRatios).toFixed(2)}x-${Math.max(...coldRatios).toFixed(2)}x, so a busier machine tips it over)`
      : `Cold meets the 1.5x goal (${coldRatio.toFixed(2)}x)`;
  findings.push(
    `${verdict} because it is two complete SSH connections in series: the relay hop alone (TCP, key exchange, publickey auth of jump, the -W channel, the raspi's banner) takes ${hop.toFixed(0)} ms median, and the end-to-end connection to the raspi's sshd then costs about what direct does (${direct.toFixed(0)} ms). On this machine the cost is CPU (both key exchanges use mlkem768x25519 on 2 shared cores); on a real network it is also round trips: the relay hop adds its own TCP + KEX + auth round trips before the inner handshake can start.`,
    `The change that makes every connection after the first one cheaper than direct here: render the relay hop with ControlMaster auto / ControlPersist (provision/sshConfig.ts already supports \`multiplex\`; provision/laptop.ts planLaptop does not pass it yet, so enrolled laptops do not get it today). With the hop reused, \`ssh raspi\` measured ${reused.toFixed(0)} ms, ${(reused / direct).toFixed(2)}x direct. A first (cold) connection cannot drop far below 1.5x with two sequential handshakes; a cheaper relay-hop KEX (curve25519-sha256 only, for the jump account) would trim CPU but not the round trips.`,
  );
  if (reused / direct > 1.1) {
    findings.push(`Reused still costs ${((reused / direct - 1) * 100).toFixed(0)}% over direct: the mux client, the relay's channel open to 127.0.0.1:${w.forwardPort}, and one more hop (relay sshd, tunnel, agent ssh) for every packet of the inner handshake.`);
  }
  if (reused < direct) {
    findings.push(`Reused was faster than direct (${reused.toFixed(0)} vs ${direct.toFixed(0)} ms). Both do the same end-to-end handshake with the raspi's sshd; what differs is the laptop's transport: direct, ssh writes its own TCP socket; reused, it writes a pipe to the ProxyJump mux client and the bytes reach the raspi's sshd over the agent's loopback connection. A gap of about 40 ms is what one Linux delayed ACK costs a small write held back by Nagle, which would explain it; this bench did not verify that. On a real network the relay path also pays the extra distance to the relay and back, which no delay emulation could add here (no sch_netem).`);
  }
  return {
    id: "connect",
    title: "Connect: ssh raspi true",
    method: [
      `${rounds} rounds; each round runs direct, cold, reused and hop once, the order rotated round to round; one discarded warm-up of each path first. Timed inside the laptop container with \`date +%s%N\` around the ssh command (the process start of ssh included; docker exec is not).`,
      "Through the relay: laptop (office NAT) → office router → `internet` bridge → relay sshd (account jump, ProxyJump `-W 127.0.0.1:PORT`) → the device agent's reverse tunnel → home router → raspi sshd. The laptop's ~/.ssh is what provision/sshConfig.ts renders (`renderConfig`, `renderKnownHosts`, `ensureInclude`), host keys pinned, StrictHostKeyChecking yes.",
      "Reused: the same rendered config with `multiplex` (ControlMaster auto, ControlPath ~/.ssh/rtunnel-%C, ControlPersist 10m) on the relay hop; a master was up (`ssh -O check` said so) before the timed runs.",
      "Profiles: 10 connects of one kind in a row, CPU time of each container (its cgroup's cpuacct, so short-lived ssh processes count) divided by 10: which hop pays for a connect.",
      "Direct baseline: the same laptop container, key, known_hosts pin (HostKeyAlias) and raspi sshd, over a second interface the laptop has on the home LAN (bench only; its default route stays the office router): laptop → home bridge → raspi:22. What a user at home gets with plain ssh; no relay, no NAT.",
    ],
    rows,
    profiles,
    findings,
  };
}
