// `npm run demo`: the no-cloud way in. With nothing but Docker it starts a relay and a device
// (a container with its own sshd and dockerd) on a local network, enrolls the device with the
// same function `npm run enroll-device` runs, and prints (and runs) the ssh line that works.
// `npm run demo -- down` removes every container, network and volume labelled rtunnel.demo
// with its instance name, and its .rtunnel-demo folder. The user's ~/.ssh is never touched: --ssh-dir is
// .rtunnel-demo/ssh. The laptop side goes through ports published on 127.0.0.1 only, so the
// same path serves Linux and Docker Desktop.
//
// It reuses the test bed's Docker plumbing (engine, debootstrap base image, builds) and the
// device fixture's run flags for now.
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { RELAY_CONTAINER_PORT } from "../infra/relayContainer.ts";
import { buildImage, docker, ensureDocker, keygen, publishedPort, relayKeyFiles, repoRoot, run, startRelayContainer, waitFor } from "../test/bed/index.ts";
import { DEVICE_RUN_FLAGS } from "../test/provision/deviceFixture.ts";
import { enrollDevice } from "./enroll.ts";
import { ExitError } from "./errors.ts";
import { renderRelayFacts } from "./relayFacts.ts";

export const DEMO_LABEL = "rtunnel.demo";
// One demo per instance name: the default for people, another for the demo's own test, so
// `npm test` never tears down a demo someone is using in the same checkout.
const INSTANCE = process.env.RTUNNEL_DEMO_INSTANCE ?? "rtunnel-demo";
const badInstance = /^rtunnel-demo(-[a-z0-9]{1,20})?$/.test(INSTANCE)
  ? undefined
  : `RTUNNEL_DEMO_INSTANCE must be rtunnel-demo or rtunnel-demo-SUFFIX (a-z, 0-9) (got "${INSTANCE}")`;
const demoDir = path.join(repoRoot, `.${INSTANCE}`);
const NET = INSTANCE;
const RELAY = `${INSTANCE}-relay`;
const DEVICE = `${INSTANCE}-raspi`;
const VOLUME = `${INSTANCE}-state`;
const label = ["--label", `${DEMO_LABEL}=${INSTANCE}`];

const say = (line: string) => process.stderr.write(`demo: ${line}\n`);

export async function demoDown(): Promise<number> {
  const ids = async (kind: string[]) => (await docker([...kind, "-q", "--filter", `label=${DEMO_LABEL}=${INSTANCE}`], { check: false })).stdout.split("\n").filter(Boolean);
  const containers = await ids(["ps", "-a"]);
  if (containers.length) await docker(["rm", "-f", "-v", ...containers]);
  const networks = await ids(["network", "ls"]);
  if (networks.length) await docker(["network", "rm", ...networks]);
  const volumes = await ids(["volume", "ls"]);
  if (volumes.length) await docker(["volume", "rm", "-f", ...volumes]);
  await rm(demoDir, { recursive: true, force: true });
  say(`removed ${containers.length} containers, ${networks.length} networks, ${volumes.length} volumes and ${path.relative(process.cwd(), demoDir) || demoDir}`);
  return containers.length + networks.length + volumes.length;
}

/** The fleet commands that work against this demo, as a newcomer would type them. */
export function demoCommands(dir: string): string[] {
  const rel = path.relative(process.cwd(), dir) || ".";
  const flags = `--relay ${rel}/relay.json --ssh-dir ${rel}/ssh`;
  return [
    `npm run status -- ${flags}`,
    `npm run audit -- ${flags}`,
    `npm run rotate-key -- raspi ${flags}`,
    `npm run add-client -- another-laptop --key ANOTHER.pub --devices raspi ${flags}`,
    `npm run revoke-device -- raspi ${flags}`,
  ];
}

export async function demoUp(): Promise<string> {
  const started = Date.now();
  say("Docker engine and base image");
  await ensureDocker();
  say("building images: rtunneld (relay), rtunnel (device agent), device (a Debian host with sshd and dockerd)");
  const [relayImage, agentImage, deviceImage] = await Promise.all([buildImage("rtunneld"), buildImage("rtunnel"), buildImage("device")]);
  await demoDown(); // a fresh relay and device each time: re-running `demo` is always safe

  const sshDir = path.join(demoDir, "ssh");
  const relayDir = path.join(demoDir, "relay");
  await mkdir(sshDir, { recursive: true, mode: 0o700 });
  await mkdir(relayDir, { recursive: true, mode: 0o700 });
  const identity = path.join(sshDir, "id_ed25519");
  const operatorKey = await keygen(identity, "rtunnel-demo-operator");
  const keys = await relayKeyFiles(relayDir, [operatorKey]);

  // This machine plays the laptop and reaches both containers only through ports published
  // on 127.0.0.1, the one path Docker Desktop (macOS, Windows) offers as well as Linux. The
  // device reaches the relay by the relay's own address on the demo network.
  say("starting the relay and the device");
  await docker(["network", "create", ...label, NET]);
  await docker(["volume", "create", ...label, VOLUME]);
  await docker(["run", "-d", "--name", DEVICE, "--hostname", "raspi", ...label, "--network", NET, "-p", "127.0.0.1:0:22", ...DEVICE_RUN_FLAGS, deviceImage]);
  const relay = await startRelayContainer({
    image: relayImage, name: RELAY, hostKeyFile: keys.hostKeyFile, adminKeysFile: keys.adminKeysFile, stateVolume: VOLUME, flags: label, network: NET,
  });
  const relayIp = (await docker(["inspect", "--format", `{{(index .NetworkSettings.Networks "${NET}").IPAddress}}`, RELAY])).stdout.trim();
  // As a person would with ssh-copy-id: the operator's key may log in as pi on the device.
  await docker(["exec", "-i", DEVICE, "sh", "-c", "install -d -m 700 -o pi -g pi /home/pi/.ssh && cat > /home/pi/.ssh/authorized_keys && chown pi:pi /home/pi/.ssh/authorized_keys"], { input: `${operatorKey}\n` });
  await waitFor("the device's dockerd", async () => (await docker(["exec", DEVICE, "docker", "info"], { check: false })).code === 0);
  await waitFor("the device's sshd", async () => (await docker(["exec", DEVICE, "nc", "-z", "127.0.0.1", "22"], { check: false })).code === 0);
  const devicePort = await publishedPort(DEVICE, 22);
  const deviceHostKey = (await docker(["exec", DEVICE, "ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub"])).stdout.split(" ")[1]!;

  const relayFile = path.join(demoDir, "relay.json");
  await writeFile(relayFile, renderRelayFacts({
    host: "127.0.0.1", port: relay.publishedPort, hostKey: keys.hostKey, deviceSide: { host: relayIp, port: RELAY_CONTAINER_PORT },
  }));
  say(`relay facts in ${path.relative(process.cwd(), relayFile)}; enrolling the device (the same code as npm run enroll-device)`);
  const result = await enrollDevice({
    name: "raspi", host: "127.0.0.1", port: devicePort, user: "pi", identity, sshDir, relayFile,
    deviceHostKey, image: agentImage, client: "demo-laptop", log: (l) => say(l), progress: true,
  });
  say(`enrolled in ${((Date.now() - started) / 1000).toFixed(0)} s; now: ${result.sshCommand}`);
  const argv = result.sshCommand.split(" ");
  const proof = await run(argv[0]!, [...argv.slice(1), "hostname"], { check: false, timeoutMs: 120_000 });
  if (proof.code !== 0) throw new ExitError(1, `${result.sshCommand} hostname failed: ${proof.stderr.trim()}`);
  say(`${result.sshCommand} hostname → ${proof.stdout.trim()}`);
  say("the fleet commands work on the demo too:");
  for (const line of demoCommands(demoDir)) say(`  ${line}`);
  say("remove everything with: npm run demo -- down");
  return result.sshCommand;
}

async function main(cmd: string | undefined): Promise<number> {
  try {
    if (badInstance) throw new ExitError(2, badInstance);
    if (cmd === "down") await demoDown();
    else if (cmd === undefined || cmd === "up") process.stdout.write(`${await demoUp()}\n`);
    else {
      process.stderr.write("usage: npm run demo [-- up | down]\n");
      return 2;
    }
    return 0;
  } catch (e) {
    process.stderr.write(`demo: ${e instanceof ExitError ? `rtunnel: ${e.message}` : e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return e instanceof ExitError ? e.code : 1;
  }
}

process.exitCode = await main(process.argv[2]);
