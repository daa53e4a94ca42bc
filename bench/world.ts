// The bench's world: the fixture library's tunnel world (NAT topology, relay, a raspi with the
// real rtunnel agent in its network namespace, an office laptop whose ~/.ssh is what the kit
// renders for a laptop). One bench-only addition: the laptop also sits on the home LAN, so it
// can reach the SAME sshd directly, without the relay or any NAT: the direct-SSH baseline.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { RELAY_CONTAINER_PORT } from "../lib/contract/relay.ts";
import { parsePublicKey } from "../lib/keys.ts";
import { hostPattern, knownHostsLine } from "../lib/knownHosts.ts";
import { ensureInclude, hostKeyAlias, renderLaptopFiles } from "../provision/laptop/model.ts";
import { buildImage, exec, installSshFiles, run, startTunnelWorld, waitFor, type RunResult, type Scope, type Topology } from "../lib/fixtures/index.ts";

export const RELAY_ALIAS_MUX_CONFIG = "/root/.ssh/config.mux";

export interface World {
  scope: Scope;
  net: Topology;
  dir: string;
  images: { relay: string; agent: string; host: string };
  relay: string;
  relayIp: string;
  relayHostKeyPub: string;
  adminKeyFile: string;
  adminKeyPub: string;
  raspi: string;
  raspiIp: string;
  agent: string;
  laptop: string;
  laptopKeyPub: string;
  forwardPort: number;
  /** one admin command from this machine; `lane` picks one of several multiplexed connections */
  admin(argv: readonly string[], input?: string, lane?: number): Promise<RunResult>;
  /** bash -c SCRIPT in the laptop container */
  onLaptop(script: string, timeoutMs?: number): Promise<RunResult>;
  /** the routers' internet-facing interface names */
  wanIf(router: string): Promise<string>;
  dispose(): Promise<void>;
}

/** The laptop's ssh_config block for the direct baseline: the same key, known_hosts and checks as the rendered raspi block. */
export function renderDirectBlock(raspiLanIp: string): string {
  return [
    "",
    "# bench only: the same raspi sshd, straight over the home LAN (no relay, no NAT).",
    "Host raspi-direct",
    `  HostName ${raspiLanIp}`,
    "  Port 22",
    "  User pi",
    `  HostKeyAlias ${hostKeyAlias("raspi")}`,
    "  IdentityFile ~/.ssh/id_ed25519",
    "  IdentitiesOnly yes",
    "  UserKnownHostsFile ~/.ssh/known_hosts.rtunnel",
    "  StrictHostKeyChecking yes",
    "",
  ].join("\n");
}

/**
 * The fixture library's tunnel world (the same one the agent tests run), the laptop also on
 * the home LAN for the direct baseline, and two ssh configs on it: what enrollment writes for
 * a Windows laptop (one connection per session) and for macOS/Linux (the relay hop
 * multiplexed), each with the direct block.
 */
export async function startWorld(scope: Scope, log: (l: string) => void): Promise<World> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-bench-"));
  const [relayImage, agentImage, hostImage] = await Promise.all([buildImage("rtunneld"), buildImage("rtunnel"), buildImage("host")]);
  const w = await startTunnelWorld(scope, { dir, multiplex: false, laptopAtHomeToo: true });
  const relayIp = w.relay.ip;
  const adminKnown = path.join(dir, "admin_known_hosts");
  await writeFile(adminKnown, `${knownHostsLine({ pattern: hostPattern(relayIp, RELAY_CONTAINER_PORT), key: parsePublicKey(w.relay.hostKey) })}\n`);
  const admin = (argv: readonly string[], input?: string, lane = 0) =>
    run("ssh", [
      "-F", "none", "-i", w.relay.admin.file, "-p", String(RELAY_CONTAINER_PORT), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
      "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${adminKnown}`, "-o", "ConnectTimeout=60",
      "-o", "ControlMaster=auto", "-o", `ControlPath=${dir}/admin-${lane}-%C`, "-o", "ControlPersist=60",
      `admin@${relayIp}`, ...argv,
    ], { input, check: false, timeoutMs: 180_000 });

  const mux = renderLaptopFiles({
    relay: { host: relayIp, port: RELAY_CONTAINER_PORT, hostKey: parsePublicKey(w.relay.hostKey) },
    devices: [{ name: "raspi", port: w.agent.forwardPort, user: "pi", hostKey: parsePublicKey(w.raspiHostKey) }],
    multiplex: true,
  });
  await installSshFiles(w.laptop, {
    config: ensureInclude(undefined, "~/.ssh/config.d/rtunnel").text + renderDirectBlock(w.raspiIp),
    "config.d/rtunnel-mux": mux["config.d/rtunnel"],
    "config.mux": ensureInclude(undefined, "~/.ssh/config.d/rtunnel-mux").text + renderDirectBlock(w.raspiIp),
  });
  const wanIf = async (router: string) => {
    const ip = await scope.ip(router, w.net.internet);
    const r = await exec(router, ["sh", "-c", `ip -o -4 addr show | awk -v ip="${ip}" 'index($4, ip"/")==1 {print $2}'`]);
    return r.stdout.trim();
  };
  log(`world: relay ${relayIp}:${RELAY_CONTAINER_PORT}, raspi ${w.raspiIp} (port ${w.agent.forwardPort} on the relay), direct via the home LAN ${w.raspiIp}:22`);
  await w.waitTunnel("ssh raspi through the relay");
  await waitFor("ssh raspi-direct", async () => (await w.onLaptop("ssh -o BatchMode=yes raspi-direct true", 60_000)).code === 0, { tries: 240, intervalMs: 250 });

  return {
    scope, net: w.net, dir, images: { relay: relayImage, agent: agentImage, host: hostImage }, relay: w.relay.container, relayIp, relayHostKeyPub: w.relay.hostKey,
    adminKeyFile: w.relay.admin.file, adminKeyPub: w.relay.admin.pub, raspi: w.raspi, raspiIp: w.raspiIp, agent: w.agent.container, laptop: w.laptop,
    laptopKeyPub: w.laptopKey.pub, forwardPort: w.agent.forwardPort, admin, onLaptop: w.onLaptop, wanIf,
    async dispose() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Interfaces of a container (all but lo). */
async function interfaces(c: string): Promise<string[]> {
  const r = await exec(c, ["sh", "-c", "ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1"]);
  return r.stdout.split("\n").map((x) => x.trim()).filter((x) => x && x !== "lo");
}

/**
 * Limits the raspi's link and the laptop's links (every interface's egress) to `rate`, or lifts
 * the limit. Both paths cross them: the data leaves the raspi's eth0 either way, the ACKs leave
 * the laptop through the office side (relay) or the home side (direct).
 */
export async function limitLinks(w: World, rate: string | undefined): Promise<void> {
  for (const c of [w.raspi, w.laptop]) {
    for (const dev of await interfaces(c)) {
      await exec(c, ["tc", "qdisc", "del", "dev", dev, "root"], { check: false });
      if (rate) await exec(c, ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "128kb", "latency", "50ms"]);
    }
  }
}

/** Whether this kernel has sch_netem (tc's delay). */
export async function hasNetem(w: World): Promise<boolean> {
  const dev = await w.wanIf(w.net.office.router);
  const r = await exec(w.net.office.router, ["tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "15ms"], { check: false });
  if (r.code === 0) await exec(w.net.office.router, ["tc", "qdisc", "del", "dev", dev, "root"], { check: false });
  return r.code === 0;
}
