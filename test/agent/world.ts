// A small world for the device agent's tests: the NAT topology, the relay (run exactly as
// infra/relayContainer.ts says), a "raspi" behind the home router whose own sshd is the
// target, the rtunnel agent sharing the raspi's network namespace (as `--network host` does on
// a real device), and a laptop behind the office router that uses the relay as ProxyJump.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RELAY_CONTAINER_PORT } from "../../infra/relayContainer.ts";
import { buildImage, createNatTopology, docker, publishedPort, run, startRelayContainer, waitFor, type RunResult, type Scope, type Topology } from "../bed/index.ts";
import { renderAgentEnv, renderKnownHostsLine, renderLaptopConfig } from "./render.ts";

export interface KeyPair {
  file: string;
  pub: string;
}

export function keypair(dir: string, name: string): KeyPair {
  const file = join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file]);
  chmodSync(file, 0o600);
  return { file, pub: readFileSync(`${file}.pub`, "utf8").trim() };
}

/** The key type and blob of a public key line, without its comment. */
export function keyOf(pub: string): string {
  return pub.split(/\s+/).slice(0, 2).join(" ");
}

export interface World {
  scope: Scope;
  net: Topology;
  dir: string;
  relay: string;
  relayIp: string;
  relayHostKey: KeyPair;
  device: string;
  agent: string;
  laptop: string;
  forwardPort: number;
  /** `ssh raspi ARGV` on the laptop: through the relay and the tunnel to the raspi's sshd. */
  sshRaspi(argv: readonly string[], timeoutMs?: number): Promise<RunResult>;
  /** The agent's log so far. */
  agentLog(): Promise<string>;
  /** A command of the relay's admin protocol, from this machine through the published port. */
  admin(argv: readonly string[], input?: string): Promise<string>;
  /**
   * Makes the agent's current relay session a dead one for good (its packets dropped at the
   * home router from now on, as when a NAT mapping is lost or the device loses power) and
   * returns its local port. New sessions pass.
   */
  blackholeSession(): Promise<number>;
  /** Resolves once `ssh raspi true` works (bounded: `tries` probes, 250 ms between them). */
  waitTunnel(what: string, tries?: number): Promise<void>;
  /** Silently cuts (drops, no FIN/RST) or restores the raspi's uplink at the home router. */
  cutUplink(cut: boolean): Promise<void>;
}

/** Builds the world in `scope` (a test's `useScope(t)`, or a bench's own Scope). */
export async function startWorld(scope: Scope): Promise<World> {
  const [relayImage, agentImage, hostImage] = await Promise.all([buildImage("rtunneld"), buildImage("rtunnel"), buildImage("host")]);
  const net = await createNatTopology(scope);
  const dir = mkdtempSync(join(tmpdir(), "rtunnel-agent-"));
  const relayHostKey = keypair(dir, "ssh_host_ed25519_key");
  const adminKey = keypair(dir, "admin");
  const deviceKey = keypair(dir, "id_ed25519");
  const clientKey = keypair(dir, "client");
  writeFileSync(join(dir, "admin_keys"), `${adminKey.pub}\n`);

  const relay = scope.name("relay");
  await startRelayContainer({
    image: relayImage, name: relay, hostKeyFile: relayHostKey.file, adminKeysFile: join(dir, "admin_keys"),
    stateVolume: await scope.volume("relay-state"), flags: scope.flags, network: net.internet,
  });
  const relayIp = await scope.ip(relay, net.internet);

  const adminKnownHosts = join(dir, "admin_known_hosts");
  const admin = async (argv: readonly string[], input?: string): Promise<string> => {
    const port = await publishedPort(relay);
    writeFileSync(adminKnownHosts, renderKnownHostsLine("127.0.0.1", port, readFileSync(`${relayHostKey.file}.pub`, "utf8")));
    const r = await run("ssh", [
      "-F", "none", "-i", adminKey.file, "-p", String(port), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
      "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${adminKnownHosts}`, "-o", "ConnectTimeout=60",
      "admin@127.0.0.1", ...argv,
    ], { input, timeoutMs: 180_000 });
    return r.stdout;
  };
  const added = JSON.parse(await admin(["add-device", "raspi"], `${deviceKey.pub}\n`)) as { port: number };
  await admin(["add-client", "laptop", "--devices", "raspi"], `${clientKey.pub}\n`);
  const forwardPort = added.port;

  // The raspi: its own sshd on 127.0.0.1:22, the laptop's key authorized for `pi`.
  const device = await net.attach(net.home, scope.name("raspi"), ["--hostname", "raspi", hostImage]);
  await scope.exec(device, ["sh", "-c", "install -d -o pi -g pi -m 700 /home/pi/.ssh && cat > /home/pi/.ssh/authorized_keys && chown pi:pi /home/pi/.ssh/authorized_keys"], { input: `${clientKey.pub}\n` });
  await waitFor("the raspi's host key", async () => (await scope.exec(device, ["test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub"], { check: false })).code === 0);
  const deviceHostKey = (await scope.exec(device, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])).stdout;

  // What provisioning writes on the device.
  const conf = join(dir, "etc-rtunnel");
  execFileSync("install", ["-d", "-m", "0755", conf]);
  writeFileSync(join(conf, "rtunnel.env"), renderAgentEnv({ relayHost: relayIp, relayPort: RELAY_CONTAINER_PORT, forwardPort }));
  writeFileSync(join(conf, "id_ed25519"), readFileSync(deviceKey.file), { mode: 0o600 });
  writeFileSync(join(conf, "known_hosts"), renderKnownHostsLine(relayIp, RELAY_CONTAINER_PORT, relayHostKey.pub));
  const agent = await scope.run([
    "--name", scope.name("agent"), "--restart", "unless-stopped", "--network", `container:${device}`,
    "-v", `${conf}:/etc/rtunnel:ro`, agentImage,
  ]);

  const laptop = await net.attach(net.office, scope.name("laptop"), ["--entrypoint", "sleep", hostImage, "infinity"]);
  const laptopKnownHosts = renderKnownHostsLine(relayIp, RELAY_CONTAINER_PORT, relayHostKey.pub) + `raspi ${keyOf(deviceHostKey)}\n`;
  await scope.exec(laptop, ["sh", "-c", "install -d -m 700 /root/.ssh && cat > /root/.ssh/client && chmod 600 /root/.ssh/client"], { input: readFileSync(clientKey.file) });
  await scope.exec(laptop, ["sh", "-c", "cat > /root/.ssh/known_hosts"], { input: laptopKnownHosts });
  await scope.exec(laptop, ["sh", "-c", "cat > /root/.ssh/config"], {
    input: renderLaptopConfig({ relayHost: relayIp, relayPort: RELAY_CONTAINER_PORT, forwardPort, identity: "/root/.ssh/client" }),
  });

  const sshRaspi = (argv: readonly string[], timeoutMs = 120_000) =>
    scope.exec(laptop, ["ssh", "raspi", ...argv], { check: false, timeoutMs });
  return {
    scope, net, dir, relay, relayIp, relayHostKey, device, agent, laptop, forwardPort, admin, sshRaspi,
    async agentLog() {
      const l = await docker(["logs", agent], { check: false });
      return l.stdout + l.stderr;
    },
    async cutUplink(cut) {
      await scope.exec(net.home.router, ["iptables", cut ? "-I" : "-D", "FORWARD", "-s", await scope.ip(device, net.home.network), "-j", "DROP"]);
      await scope.exec(net.home.router, ["iptables", cut ? "-I" : "-D", "FORWARD", "-d", await scope.ip(device, net.home.network), "-j", "DROP"]);
    },
    async blackholeSession() {
      const ss = await scope.exec(device, ["ss", "-tnH", "state", "established", `dst ${relayIp}`, "dport", `= :${RELAY_CONTAINER_PORT}`]);
      // Columns with a state filter: Recv-Q Send-Q Local:Port Peer:Port
      const ports = ss.stdout.split("\n").filter(Boolean).map((l) => Number(l.trim().split(/\s+/)[2]?.split(":").pop()));
      if (ports.length !== 1 || !(ports[0]! > 0)) throw new Error(`expected one session to the relay, ss says:\n${ss.stdout}`);
      const deviceIp = await scope.ip(device, net.home.network);
      const port = String(ports[0]);
      await scope.exec(net.home.router, ["iptables", "-I", "FORWARD", "-s", deviceIp, "-p", "tcp", "--sport", port, "-j", "DROP"]);
      await scope.exec(net.home.router, ["iptables", "-I", "FORWARD", "-d", deviceIp, "-p", "tcp", "--dport", port, "-j", "DROP"]);
      return ports[0]!;
    },
    async waitTunnel(what, tries = 480) {
      await waitFor(what, async () => (await sshRaspi(["true"], 60_000)).code === 0, { tries, intervalMs: 250 });
    },
  };
}
