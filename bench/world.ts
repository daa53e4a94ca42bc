// The bench's world: the test bed's NAT topology, the relay run exactly as infra/relayContainer.ts
// says, a raspi (its own sshd) behind the home router with the real rtunnel agent in its network
// namespace, and a laptop behind the office router whose ~/.ssh is what provision/ renders for
// users. One bench-only addition: a port forward on the home router (WAN:2200 -> raspi:22), so the
// laptop can also reach the SAME sshd directly, over the same two routers and the same
// `internet` bridge, without the relay: that is the direct-SSH baseline.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { RELAY_CONTAINER_PORT } from "../infra/relayContainer.ts";
import { renderAgentEnv } from "../provision/device.ts";
import { ensureInclude, hostKeyAlias, knownHostsPattern, renderConfig, renderKnownHosts } from "../provision/sshConfig.ts";
import { buildImage, createNatTopology, docker, exec, keygen, run, startRelayContainer, waitFor, type RunResult, type Scope, type Topology } from "../test/bed/index.ts";

export const RELAY_ALIAS_MUX_CONFIG = "/root/.ssh/config.mux";

const blob = (pub: string) => {
  const [type = "", base64 = ""] = pub.trim().split(/\s+/);
  return { type, base64 };
};

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

/** The laptop's ssh_config blocks for the direct baseline: the same key, known_hosts and checks as the rendered raspi block. */
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

export async function startWorld(scope: Scope, log: (l: string) => void): Promise<World> {
  const [relayImage, agentImage, hostImage] = await Promise.all([buildImage("rtunneld"), buildImage("rtunnel"), buildImage("host")]);
  const net = await createNatTopology(scope);
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-bench-"));
  const relayKey = path.join(dir, "relay_host_key");
  const relayHostKeyPub = await keygen(relayKey, "relay");
  const adminKeyFile = path.join(dir, "admin");
  const adminKeyPub = await keygen(adminKeyFile, "admin");
  const deviceKeyFile = path.join(dir, "device");
  const deviceKeyPub = await keygen(deviceKeyFile, "raspi");
  const laptopKeyFile = path.join(dir, "laptop");
  const laptopKeyPub = await keygen(laptopKeyFile, "laptop");
  await writeFile(path.join(dir, "admin_keys"), `${adminKeyPub}\n`);

  const relay = scope.name("relay");
  await startRelayContainer({
    image: relayImage, name: relay, hostKeyFile: relayKey, adminKeysFile: path.join(dir, "admin_keys"),
    stateVolume: await scope.volume("relay-state"), flags: scope.flags, network: net.internet,
  });
  const relayIp = await scope.ip(relay, net.internet);
  const adminKnown = path.join(dir, "admin_known_hosts");
  await writeFile(adminKnown, `[${relayIp}]:${RELAY_CONTAINER_PORT} ${blob(relayHostKeyPub).type} ${blob(relayHostKeyPub).base64}\n`);
  const admin = (argv: readonly string[], input?: string, lane = 0) =>
    run("ssh", [
      "-F", "none", "-i", adminKeyFile, "-p", String(RELAY_CONTAINER_PORT), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
      "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${adminKnown}`, "-o", "ConnectTimeout=10",
      "-o", "ControlMaster=auto", "-o", `ControlPath=${dir}/admin-${lane}-%C`, "-o", "ControlPersist=60",
      `admin@${relayIp}`, ...argv,
    ], { input, check: false, timeoutMs: 60_000 });
  const added = await admin(["add-device", "raspi"], `${deviceKeyPub}\n`);
  if (added.code !== 0) throw new Error(`add-device raspi: ${added.stderr}`);
  const forwardPort = (JSON.parse(added.stdout) as { port: number }).port;
  const client = await admin(["add-client", "laptop", "--devices", "raspi"], `${laptopKeyPub}\n`);
  if (client.code !== 0) throw new Error(`add-client laptop: ${client.stderr}`);

  // The raspi: its own sshd; the laptop's key may log in as pi.
  const raspi = await net.attach(net.home, scope.name("raspi"), ["--hostname", "raspi", hostImage]);
  await exec(raspi, ["sh", "-c", "install -d -o pi -g pi -m 700 /home/pi/.ssh && cat > /home/pi/.ssh/authorized_keys && chown pi:pi /home/pi/.ssh/authorized_keys"], { input: `${laptopKeyPub}\n` });
  await waitFor("the raspi's host key", async () => (await exec(raspi, ["test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub"], { check: false })).code === 0);
  const raspiHostKey = (await exec(raspi, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])).stdout;
  const raspiIp = await scope.ip(raspi, net.home.network);

  // The agent, configured as enrollment configures it, sharing the raspi's network namespace.
  const conf = path.join(dir, "etc-rtunnel");
  await promisify(execFile)("install", ["-d", "-m", "0755", conf]);
  await writeFile(path.join(conf, "rtunnel.env"), renderAgentEnv({ relayHost: relayIp, relayPort: RELAY_CONTAINER_PORT, forwardPort }));
  await writeFile(path.join(conf, "id_ed25519"), await readFile(deviceKeyFile), { mode: 0o600 });
  await writeFile(path.join(conf, "known_hosts"), renderKnownHosts([{ pattern: knownHostsPattern(relayIp, RELAY_CONTAINER_PORT), ...blob(relayHostKeyPub) }]));
  const agent = await scope.run(["--name", scope.name("agent"), "--restart", "unless-stopped", "--network", `container:${raspi}`, "-v", `${conf}:/etc/rtunnel:ro`, agentImage]);

  const wanIf = async (router: string) => {
    const ip = await scope.ip(router, net.internet);
    const r = await exec(router, ["sh", "-c", `ip -o -4 addr show | awk -v ip="${ip}" 'index($4, ip"/")==1 {print $2}'`]);
    return r.stdout.trim();
  };
  // The laptop: exactly the files enrollment writes (provision/sshConfig.ts), plus the direct block.
  // The direct baseline's path: a second interface on the home network (the laptop "at home").
  // Its default route is the office router (as createNatTopology's attach sets it), so
  // everything but the home LAN still goes through the office NAT.
  const laptop = await scope.run(["--name", scope.name("laptop"), "--network", net.office.network, "--cap-add", "NET_ADMIN", "--hostname", "laptop", "--entrypoint", "sleep", hostImage, "infinity"]);
  await docker(["network", "connect", net.home.network, laptop]);
  await exec(laptop, ["ip", "route", "replace", "default", "via", net.office.routerLanIp]);
  const relayHop = { host: relayIp, port: RELAY_CONTAINER_PORT };
  const devices = [{ name: "raspi", port: forwardPort, user: "pi" }];
  const common = { relay: relayHop, identityFile: "~/.ssh/id_ed25519", knownHostsFile: "~/.ssh/known_hosts.rtunnel", devices };
  const files: Record<string, string | Buffer> = {
    "id_ed25519": await readFile(laptopKeyFile),
    "known_hosts.rtunnel": renderKnownHosts([
      { pattern: knownHostsPattern(relayIp, RELAY_CONTAINER_PORT), ...blob(relayHostKeyPub) },
      { pattern: hostKeyAlias("raspi"), ...blob(raspiHostKey) },
    ]),
    "config.d/rtunnel": renderConfig(common),
    "config.d/rtunnel-mux": renderConfig({ ...common, multiplex: { controlPath: "~/.ssh/rtunnel-%C", persist: "10m" } }),
    config: ensureInclude(undefined, "~/.ssh/config.d/rtunnel").text + renderDirectBlock(raspiIp),
    "config.mux": ensureInclude(undefined, "~/.ssh/config.d/rtunnel-mux").text + renderDirectBlock(raspiIp),
  };
  await exec(laptop, ["install", "-d", "-m", "700", "/root/.ssh", "/root/.ssh/config.d"]);
  for (const [name, text] of Object.entries(files)) {
    await exec(laptop, ["sh", "-c", `cat > /root/.ssh/${name} && chmod 600 /root/.ssh/${name}`], { input: text });
  }
  const onLaptop = (script: string, timeoutMs = 600_000) => exec(laptop, ["bash", "-c", script], { check: false, timeoutMs });
  log(`world: relay ${relayIp}:${RELAY_CONTAINER_PORT}, raspi ${raspiIp} (port ${forwardPort} on the relay), direct via the home LAN ${raspiIp}:22`);
  await waitFor("ssh raspi through the relay", async () => (await onLaptop("ssh -o BatchMode=yes raspi true", 20_000)).code === 0, { tries: 120, intervalMs: 250 });
  await waitFor("ssh raspi-direct", async () => (await onLaptop("ssh -o BatchMode=yes raspi-direct true", 20_000)).code === 0, { tries: 40, intervalMs: 250 });

  return {
    scope, net, dir, images: { relay: relayImage, agent: agentImage, host: hostImage }, relay, relayIp, relayHostKeyPub, adminKeyFile, adminKeyPub,
    raspi, raspiIp, agent, laptop, laptopKeyPub, forwardPort, admin, onLaptop, wanIf,
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
