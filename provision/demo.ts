// `npm run demo`: the no-cloud way in. With nothing but Docker it starts a relay and a device
// (a container with its own sshd and dockerd) on a local network, enrolls the device with the
// same function `npm run enroll-device` runs, and prints (and runs) the ssh line that works,
// then the fleet commands that work on it. `npm run demo -- down` removes every container,
// network and volume labelled rtunnel.demo with its instance name, closes the demo laptop's
// master connection, and removes its .rtunnel-demo folder. The user's ~/.ssh is never
// touched: --ssh-dir is .rtunnel-demo/ssh. The laptop side goes through ports published on
// 127.0.0.1 only, so the same path serves Linux and Docker Desktop.
//
// The relay and the device come from the fixture library (lib/fixtures), as in the tests.
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { ensureDocker, keygen, publishedPort, repoRoot, run, Scope, startDevice, startRelay } from "../lib/fixtures/index.ts";
import { enrollDevice } from "./commands/enroll.ts";
import { ExitError } from "./errors.ts";
import { closeRelayMaster, laptopPaths } from "./laptop/files.ts";
import { renderRelayFacts } from "./relay/facts.ts";

export const DEMO_LABEL = "rtunnel.demo";
// One demo per instance name: the default for people, another for the demo's own test, so
// `npm test` never tears down a demo someone is using in the same checkout.
const INSTANCE = process.env.RTUNNEL_DEMO_INSTANCE ?? "rtunnel-demo";
const badInstance = /^rtunnel-demo(-[a-z0-9]{1,20})?$/.test(INSTANCE)
  ? undefined
  : `RTUNNEL_DEMO_INSTANCE must be rtunnel-demo or rtunnel-demo-SUFFIX (a-z, 0-9) (got "${INSTANCE}")`;
const demoDir = path.join(repoRoot, `.${INSTANCE}`);
const sshDir = path.join(demoDir, "ssh");
const scope = () => new Scope("demo", { owner: { label: `${DEMO_LABEL}=${INSTANCE}`, prefix: INSTANCE } });

const say = (line: string) => process.stderr.write(`demo: ${line}\n`);

export async function demoDown(): Promise<number> {
  if (await closeRelayMaster(laptopPaths({ sshDir }))) say("closed the demo laptop's master connection to the relay");
  const n = await scope().dispose();
  await rm(demoDir, { recursive: true, force: true });
  say(`removed ${n} containers, networks and volumes, and ${path.relative(process.cwd(), demoDir) || demoDir}`);
  return n;
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
  await demoDown(); // a fresh relay and device each time: re-running `demo` is always safe

  const relayDir = path.join(demoDir, "relay");
  await mkdir(sshDir, { recursive: true, mode: 0o700 });
  await mkdir(relayDir, { recursive: true, mode: 0o700 });
  const operator = await keygen(path.join(sshDir, "id_ed25519"), "rtunnel-demo-operator");

  // This machine plays the laptop and reaches both containers only through ports published
  // on 127.0.0.1, the one path Docker Desktop (macOS, Windows) offers as well as Linux. The
  // device reaches the relay by the relay's own address on the demo network.
  say("starting the relay and the device (building their images first: rtunneld, and a Debian host with sshd and dockerd)");
  const s = scope();
  const network = await s.network("net");
  const relay = await startRelay(s, { network, dir: relayDir, admin: operator });
  const device = await startDevice({
    hostname: "raspi", operatorKey: operator.pub, flags: ["-p", "127.0.0.1:0:22"],
    place: (args) => s.run(["--name", s.name("raspi"), "--network", network, ...args]),
  });
  const relayFile = path.join(demoDir, "relay.json");
  await writeFile(relayFile, renderRelayFacts(relay.facts("published")));
  say(`relay facts in ${path.relative(process.cwd(), relayFile)}; enrolling the device (the same code as npm run enroll-device)`);
  const result = await enrollDevice({
    name: "raspi", host: "127.0.0.1", port: await publishedPort(device.container, 22), user: "pi", identity: operator.file, sshDir, relayFile,
    deviceHostKey: device.hostKeyFingerprint, client: "demo-laptop", log: (l) => say(l), progress: true,
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
