// Enrollment end to end in the NAT topology of DESIGN.md "Test bed": the relay on `internet`,
// a device with its own sshd and dockerd behind the home router, the enrollment CLI run from
// the home side (this process: the Docker host sits on the home bridge, so it reaches the
// device by its LAN address as a laptop at home would, and the relay by its public address),
// and an office laptop behind the other router that gets nothing but the ~/.ssh enrollment
// wrote. One topology, relay and device serve every case (test.serial), in order.
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { RELAY_CONTAINER_PORT } from "../lib/contract/relay.ts";
import { RelayAdmin } from "../provision/relay/admin.ts";
import { parseRelayFacts } from "../provision/relay/facts.ts";
import { parsePublicKey } from "../lib/keys.ts";
import { renderRelayFacts } from "../provision/relay/facts.ts";
import { buildImage, copySshDir, createNatTopology, docker, ensureDocker, keygen, Scope, sharedWorldHooks, startDevice, startLaptop, startRelay, type Topology } from "./bed/index.ts";
import { oneLine, runCli } from "./bed/index.ts";

interface Bed {
  scope: Scope;
  net: Topology;
  tmp: string;
  home: string;
  identity: string;
  operatorKey: string;
  relay: string;
  relayIp: string;
  relayHostKey: string;
  relayFile: string;
  device: string;
  deviceIp: string;
  deviceFp: string;
  noDocker: string;
  noDockerIp: string;
  laptop: string;
  agentImage: string;
}
let bed: Bed;
const USER_CONFIG = "# my own settings\r\nHost work\r\n  User me\r\n  Port 2200\r\n";

test.before(async () => {
  await ensureDocker();
  const agentImage = await buildImage("rtunnel");
  const scope = new Scope("enroll");
  const net = await createNatTopology(scope);
  const tmp = await mkdtemp(path.join(os.tmpdir(), "rtunnel-enroll-"));
  const home = path.join(tmp, "home");
  await mkdir(path.join(home, ".ssh"), { recursive: true, mode: 0o700 });
  await writeFile(path.join(home, ".ssh", "config"), USER_CONFIG, { mode: 0o600 });
  const operator = await keygen(path.join(home, ".ssh", "id_ed25519"), "operator");
  const relay = await startRelay(scope, { network: net.internet, dir: tmp, admin: operator });
  // As the person did with ssh-copy-id before enrolling: their key may log in as pi.
  const [device, noDocker] = await Promise.all([
    startDevice({ hostname: "raspi", operatorKey: operator.pub, place: (args) => net.attach(net.home, scope.name("device"), args) }),
    startDevice({ image: "host", hostname: "nodocker", operatorKey: operator.pub, place: (args) => net.attach(net.home, scope.name("nodocker"), args) }),
  ]);
  const laptop = await startLaptop((args) => net.attach(net.office, scope.name("laptop"), args), "laptop");
  const relayFile = path.join(tmp, "relay.json");
  await writeFile(relayFile, renderRelayFacts(relay.facts()));
  bed = {
    scope, net, tmp, home, identity: operator.file, operatorKey: operator.pub, relay: relay.container, relayIp: relay.ip, relayHostKey: relay.hostKey, relayFile,
    device: device.container, deviceFp: device.hostKeyFingerprint, deviceIp: await net.ip(device.container, net.home.network),
    noDocker: noDocker.container, noDockerIp: await net.ip(noDocker.container, net.home.network), laptop, agentImage,
  };
});

sharedWorldHooks(test, () => bed && { scope: bed.scope, dirs: [bed.tmp] });

/** The CLI as a person runs it, with HOME pointing at the test's home (no --ssh-dir: the default ~/.ssh). */
async function enroll(args: string[]) {
  const started = Date.now();
  const r = await runCli(["enroll-device", ...args], { home: bed.home });
  return { ...r, ms: Date.now() - started };
}
const base = (name: string, host: string) => [name, "--host", host, "--user", "pi", "--relay", bed.relayFile, "--image", bed.agentImage, "--client", "office-laptop"];

async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out[path.relative(dir, path.join(e.parentPath, e.name))] = (await readFile(path.join(e.parentPath, e.name))).toString("base64");
  }
  return out;
}

/** Everything a failed enrollment must leave as it was: the laptop's ~/.ssh, the relay registry, the devices. */
async function snapshot() {
  const device = async (c: string) =>
    (await bed.scope.exec(c, ["sh", "-c", [
      "ls -la --time-style=full-iso /etc/rtunnel 2>&1; sha256sum /etc/rtunnel/* 2>&1",
      // the device's sshd: its files, and its listener's sockets (a reload replaces them)
      "sha256sum /etc/ssh/sshd_config /etc/ssh/sshd_config.d/* 2>&1; ls -l /proc/$(cat /run/sshd.pid)/fd 2>&1 | grep -o 'socket:.*' | sort",
      "cat /home/pi/.ssh/authorized_keys",
      "if command -v docker >/dev/null; then docker ps -a --no-trunc --format '{{.ID}} {{.Image}} {{.CreatedAt}} {{.State}}'; docker image ls -q --no-trunc; fi",
    ].join("; ")], { check: false })).stdout;
  return {
    laptop: await tree(path.join(bed.home, ".ssh")),
    registry: (await bed.scope.exec(bed.relay, ["cat", "/var/lib/rtunneld/registry/registry.json"], { check: false })).stdout,
    device: await device(bed.device),
    noDocker: await device(bed.noDocker),
  };
}

const onLaptop = (cmd: string[], timeoutMs = 120_000) => bed.scope.exec(bed.laptop, cmd, { check: false, timeoutMs });

test.serial("[docker] enrollment from home writes ~/.ssh so that the office laptop reaches the device through the relay: ssh and scp both ways", async (t) => {
  const r = await enroll([...base("raspi", bed.deviceIp), "--device-host-key", bed.deviceFp]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, "ssh raspi\n");
  t.log(`enrollment took ${(r.ms / 1000).toFixed(1)} s:\n${r.stderr.split("\n").filter((l) => /\(\d+\.\d s\)$/.test(l)).join("\n")}`);

  // The user's file: our two lines on top, then their bytes unchanged; the original backed up.
  const ssh = path.join(bed.home, ".ssh");
  const config = await readFile(path.join(ssh, "config"), "utf8");
  t.is(config, `# Added by rtunnel: keep this Include above every Host and Match line.\r\nInclude ~/.ssh/config.d/rtunnel\r\n${USER_CONFIG}`);
  t.is(await readFile(path.join(ssh, "config.rtunnel-backup"), "utf8"), USER_CONFIG);

  // The office laptop gets that ~/.ssh and nothing else.
  await copySshDir(bed.laptop, ssh);
  const hostname = await onLaptop(["ssh", "raspi", "hostname"]);
  t.is(hostname.code, 0, hostname.stderr);
  t.is(hostname.stdout.trim(), "raspi");
  // The relay hop is multiplexed: the first ssh left a master connection that the next ones reuse.
  t.regex(await readFile(path.join(ssh, "config.d", "rtunnel"), "utf8"), /Host rtunnel-relay\n(?: {2}.*\n)* {2}ControlMaster auto\n {2}ControlPath ~\/\.ssh\/rtunnel-%C\n {2}ControlPersist 10m\n/);
  const master = await onLaptop(["ssh", "-O", "check", "rtunnel-relay"]);
  t.is(master.code, 0, master.stderr);
  t.regex(master.stderr, /Master running/);

  const up = `up-${Date.now()}`;
  await onLaptop(["sh", "-c", `echo ${up} > /tmp/up.txt`]);
  const put = await onLaptop(["scp", "/tmp/up.txt", "raspi:/tmp/up.txt"]);
  t.is(put.code, 0, put.stderr);
  t.is((await bed.scope.exec(bed.device, ["cat", "/tmp/up.txt"])).stdout.trim(), up);
  await bed.scope.exec(bed.device, ["sh", "-c", "echo down-from-raspi > /tmp/down.txt"]);
  const get = await onLaptop(["scp", "raspi:/tmp/down.txt", "/tmp/down.txt"]);
  t.is(get.code, 0, get.stderr);
  t.is((await onLaptop(["cat", "/tmp/down.txt"])).stdout.trim(), "down-from-raspi");

  // Without the relay the laptop has no way in: the device's port 22 is closed to it, and ssh
  // straight to the device's address (no ProxyJump) fails. Positive control: the home LAN does reach it.
  t.is((await bed.scope.exec(bed.net.home.router, ["nc", "-z", "-w", "3", bed.deviceIp, "22"], { check: false })).code, 0);
  t.not((await onLaptop(["nc", "-z", "-w", "3", bed.deviceIp, "22"])).code, 0, "the laptop opened the device's port 22");
  const direct = await onLaptop(["ssh", "-o", "ProxyJump=none", "-o", `HostName=${bed.deviceIp}`, "-o", "Port=22", "-o", "ConnectTimeout=10", "raspi", "true"]);
  t.not(direct.code, 0, "ssh without the relay reached the device");
});

test.serial("[docker] enrolling the same device again changes nothing on the laptop, the relay or the device", async (t) => {
  const before = await snapshot();
  const r = await enroll([...base("raspi", bed.deviceIp)]); // pinned now by known_hosts.rtunnel
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /raspi was already enrolled: nothing changed/);
  t.log(`re-enrollment took ${(r.ms / 1000).toFixed(1)} s`);
  t.deepEqual(await snapshot(), before);
});

test.serial("[docker] enrolling under the default client name after the laptop's hostname changed keeps the relay's name for the key, and changes nothing", async (t) => {
  // The first enrollment registered this key as office-laptop; without --client the name is
  // now laptop-HOSTNAME, which the relay would refuse for a key it already holds.
  const before = await snapshot();
  const r = await enroll(["raspi", "--host", bed.deviceIp, "--user", "pi", "--relay", bed.relayFile, "--image", bed.agentImage]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /your key is registered on the relay as client office-laptop: keeping that name \(not laptop-/);
  t.regex(r.stderr, /raspi was already enrolled: nothing changed/);
  t.deepEqual(await snapshot(), before);
});

test.serial("[docker] --dry-run prints every change enrollment would make, in order, and changes nothing anywhere", async (t) => {
  // A re-enrollment that moves the device's agent to another relay address: files change.
  const moved = path.join(bed.tmp, "relay-moved.json");
  await writeFile(moved, JSON.stringify({ host: bed.relayIp, port: RELAY_CONTAINER_PORT, hostKey: bed.relayHostKey, deviceSide: { host: bed.relayIp, port: RELAY_CONTAINER_PORT + 7 } }));
  const before = await snapshot();
  const r = await enroll(["raspi", "--host", bed.deviceIp, "--user", "pi", "--relay", moved, "--image", bed.agentImage, "--client", "office-laptop", "--dry-run"]);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split("\n");
  t.regex(lines[0]!, /^enroll raspi: device pi@\S+:22 \(SHA256:\S+\), linux\/amd64 \(the device's Docker runs amd64\)$/);
  t.regex(r.stdout, /\n {2}device {2}keep the device key SHA256:\S+\n {2}relay {3}keep device raspi \(port \d+\)\n/);
  t.regex(r.stdout, /\n {2}device {2}agent files \/etc\/rtunnel\/rtunnel\.env, \/etc\/rtunnel\/known_hosts: written where they differ\n/);
  t.is(lines.at(-1), "nothing was changed (--dry-run)");
  const json = await enroll(["raspi", "--host", bed.deviceIp, "--user", "pi", "--relay", moved, "--image", bed.agentImage, "--client", "office-laptop", "--dry-run", "--json"]);
  t.is(json.code, 0, json.stderr);
  const plan = JSON.parse(json.stdout) as { name: string; platform: string; port: number; changes: { where: string; what: string }[] };
  t.deepEqual([plan.name, plan.platform], ["raspi", "linux/amd64"]);
  t.true(plan.port > 0);
  t.true(plan.changes.length >= 6);
  t.deepEqual(await snapshot(), before);
});

test.serial("[docker] a device already enrolled under another name is turned away in the plan, with one line, before any change", async (t) => {
  const before = await snapshot();
  const r = await enroll([...base("garage", bed.deviceIp), "--device-host-key", bed.deviceFp]);
  t.is(r.code, 4, r.stderr);
  oneLine(t, r.stderr, /^rtunnel: the device at \S+ is enrolled on the relay as device raspi \(its key SHA256:\S+\): enroll it as raspi, or revoke-device raspi first$/);
  t.deepEqual(await snapshot(), before);
});

test.serial("[docker] a config.d that is a file stops enrollment in its preflight with one line, before any change", async (t) => {
  const ssh = path.join(bed.home, ".ssh");
  await rename(path.join(ssh, "config.d"), path.join(ssh, "config.d.saved"));
  t.teardown(async () => {
    await rm(path.join(ssh, "config.d"), { force: true });
    await rename(path.join(ssh, "config.d.saved"), path.join(ssh, "config.d"));
  });
  await writeFile(path.join(ssh, "config.d"), "a file, not a directory\n");
  const before = await snapshot();
  const r = await enroll([...base("raspi", bed.deviceIp)]);
  t.is(r.code, 2, r.stderr);
  oneLine(t, r.stderr, /^rtunnel: can't read .*config\.d\/rtunnel: a part of its path is a file, not a directory: move that file away; nothing was changed$/);
  t.notRegex(r.stderr, /device key|image on the device/, "it went past the preflight");
  t.deepEqual(await snapshot(), before);
});

const failures: [string, () => Promise<string[]>, RegExp][] = [
  ["a wrong device host key", async () => [...base("raspi", bed.deviceIp), "--device-host-key", `SHA256:${"A".repeat(43)}`],
    /^rtunnel: the device at .* shows host key SHA256:\S+, not the pinned SHA256:A{43}: /],
  ["a device seen for the first time without a pin", async () => [...base("raspi2", bed.deviceIp)],
    /^rtunnel: the device at .* is unknown; its host key is SHA256:\S+: .*--device-host-key SHA256:/],
  ["an unknown relay host key", async () => {
    const other = await keygen(path.join(bed.tmp, `other-relay-${Date.now()}`), "impostor");
    const file = path.join(bed.tmp, "wrong-relay.json");
    await writeFile(file, JSON.stringify({ host: bed.relayIp, port: RELAY_CONTAINER_PORT, hostKey: other.pub }));
    return [...base("raspi", bed.deviceIp), "--relay", file];
  }, /^rtunnel: the relay at .* shows host key SHA256:\S+, not the pinned SHA256:\S+ from /],
  ["a relay that refuses the admin key", async () => {
    const stranger = path.join(bed.tmp, `stranger-${Date.now()}`);
    await keygen(stranger, "stranger");
    return [...base("raspi", bed.deviceIp), "--identity", stranger];
  }, /^rtunnel: the relay at .* refused the admin key/],
  ["a name already taken by another key", async () => {
    const other = await keygen(path.join(bed.tmp, `taken-${Date.now()}`), "taken");
    const admin = await RelayAdmin.connect(parseRelayFacts({ host: bed.relayIp, port: RELAY_CONTAINER_PORT, hostKey: bed.relayHostKey }, "test"), { identityFile: bed.identity });
    try {
      await admin.addDevice("taken", parsePublicKey(other.pub));
    } finally {
      admin.dispose();
    }
    return [...base("taken", bed.deviceIp), "--device-host-key", bed.deviceFp];
  }, /^rtunnel: the name taken is already taken on the relay by another device key \(SHA256:\S+\)/],
  ["a device without Docker", async () => [...base("nodock", bed.noDockerIp), "--accept-new"],
    /^rtunnel: Docker is not installed on the device nodock: .*--install-docker$/],
];

for (const [what, args, pattern] of failures) {
  test.serial(`[docker] ${what} stops enrollment with one clear line and leaves laptop, relay and device as they were`, async (t) => {
    const argv = await args();
    const before = await snapshot();
    const r = await enroll(argv);
    t.not(r.code, 0);
    t.is(r.stdout, "");
    oneLine(t, r.stderr, pattern);
    t.deepEqual(await snapshot(), before);
  });
}

test.serial("[docker] a tunnel that does not come up: enrollment prints the agent's state and last lines and the likely fix; a re-run with the right facts heals it", async (t) => {
  // The device is told to reach the relay on a port where nothing listens.
  const wrong = path.join(bed.tmp, "relay-wrong-device-side.json");
  await writeFile(wrong, JSON.stringify({ host: bed.relayIp, port: RELAY_CONTAINER_PORT, hostKey: bed.relayHostKey, deviceSide: { host: bed.relayIp, port: RELAY_CONTAINER_PORT + 1 } }));
  const args = (relayFile: string) => ["raspi", "--host", bed.deviceIp, "--user", "pi", "--relay", relayFile, "--image", bed.agentImage, "--client", "office-laptop"];
  const r = await enroll([...args(wrong), "--timeout", "20"]);
  t.is(r.code, 6, r.stderr);
  oneLine(t, r.stderr, new RegExp(`^rtunnel: the tunnel of raspi did not come up within 20 s: agent container running, restarted 0 times; the device cannot reach the relay at ${bed.relayIp.replace(/\./g, "\\.")}:${RELAY_CONTAINER_PORT + 1}: .*re-running enrollment is safe$`));
  t.regex(r.stderr, /\n {2}the agent on raspi: agent container running, restarted 0 times; its last lines:\n/);
  t.regex(r.stderr, /\n {4}\S+ rtunnel: lost: ssh: connect to host \S+ port 2223: Connection refused/);
  const healed = await enroll(args(bed.relayFile));
  t.is(healed.code, 0, healed.stderr);
  t.is((await onLaptop(["ssh", "raspi", "hostname"])).stdout.trim(), "raspi");
});

test.serial("[docker] with the relay gone, the laptop can't reach the device at all", async (t) => {
  t.is((await onLaptop(["ssh", "raspi", "true"])).code, 0, "positive control");
  await docker(["stop", "-t", "1", bed.relay]);
  const r = await onLaptop(["ssh", "-o", "ConnectTimeout=30", "raspi", "true"], 120_000);
  t.not(r.code, 0);
});
