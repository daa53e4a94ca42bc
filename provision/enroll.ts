// `enroll-device NAME`: DESIGN.md "Operator commands", steps 1-7. Order matters: everything
// that only reads (inputs, relay, device, the laptop's ~/.ssh files, local image) comes first,
// so a bad input, a wrong host key, a refused admin key, a taken name, a device without
// Docker or an unreadable ~/.ssh/config stops before any change anywhere; then the device,
// the relay and the device's agent; the laptop's ~/.ssh is written last, only once the tunnel
// is up, from the texts planned at the start. Every step skips what is already done, so a
// second run changes nothing.
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import cliProgress from "cli-progress";
import { diagnoseAgent } from "./agentDiagnosis.ts";
import { Device, DEVICE_DIR, renderAgentEnv, type Preflight } from "./device.ts";
import { ExitError, EXIT } from "./errors.ts";
import { applyLaptop, configPaths, laptopPaths, pinnedDeviceKey, planLaptopFrom, readLaptop, type LaptopChange } from "./laptop.ts";
import { runLocal, spawnLocal } from "./proc.ts";
import { RelayAdmin, type RelayEntry } from "./relay.ts";
import { loadRelayFacts, type RelayFacts } from "./relayFacts.ts";
import { enrollClientName } from "./registry.ts";
import { connectPinned } from "./ssh.ts";
import { knownHostsPattern, validateDeviceName } from "./sshConfig.ts";
import { InputError, parseHostKeyPin, parsePublicKey, validateHost, validateName, validatePort, validateUser, type PublicKey } from "./validate.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface EnrollOptions {
  name: string;
  /** the device's LAN address */
  host: string;
  port?: number | string;
  user?: string;
  /** private key of the operator (public half next to it as .pub); default SSHDIR/id_ed25519 */
  identity?: string;
  /** ssh-agent socket; default SSH_AUTH_SOCK */
  agent?: string;
  home?: string;
  sshDir?: string;
  /** relay facts file; without it and without `relay`, `pulumi stack output --json` */
  relayFile?: string;
  relay?: RelayFacts;
  acceptNew?: boolean;
  /** SHA256:... or a public key line */
  deviceHostKey?: string;
  /** the device agent image, used as it is (built from images/rtunnel only when missing); without it, DEFAULT_IMAGE built from images/rtunnel every time */
  image?: string;
  installDocker?: boolean;
  /** this laptop's name on the relay (its `jump` key) */
  client?: string;
  /** seconds to wait for the tunnel */
  timeout?: number | string;
  /** human progress (stderr); quiet under --json */
  log?: (line: string) => void;
  progress?: boolean;
  cwd?: string;
}

export interface EnrollResult {
  name: string;
  port: number;
  relay: { host: string; port: number };
  deviceHostKey: string;
  sshCommand: string;
  changed: { device: string[]; relay: string[]; laptop: string[] };
  timingsMs: Record<string, number>;
}

/** A relay/laptop-safe default client name from this machine's hostname. */
export function defaultClientName(hostname = os.hostname()): string {
  const s = hostname.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "");
  return `laptop-${s || "operator"}`.slice(0, 63).replace(/-+$/, "");
}

/** Every input checked (an InputError names the bad one; cli.ts maps it to exit 2). */
function inputs(o: EnrollOptions) {
  const name = validateDeviceName(o.name);
  const host = validateHost(o.host, "--host");
  const port = validatePort(o.port ?? 22, "--port");
  const user = validateUser(o.user ?? "pi", "--user");
  const client = validateName(o.client ?? defaultClientName(), "--client");
  const pin = o.deviceHostKey ? parseHostKeyPin(o.deviceHostKey).fingerprint : undefined;
  const timeout = validatePort(o.timeout ?? 60, "--timeout");
  return { name, host, port, user, client, pin, timeout };
}

export async function enrollDevice(o: EnrollOptions): Promise<EnrollResult> {
  const log = o.log ?? (() => {});
  const timings: Record<string, number> = {};
  let t0 = Date.now();
  const step = (label: string) => {
    const now = Date.now();
    timings[label] = now - t0;
    log(`  ${label} (${((now - t0) / 1000).toFixed(1)} s)`);
    t0 = now;
  };
  const changed: EnrollResult["changed"] = { device: [], relay: [], laptop: [] };

  // 0. Inputs, all of them, before talking to anyone.
  const { name, host, port, user, client: wanted, pin: pinArg, timeout } = inputs(o);
  const paths = laptopPaths({ home: o.home, sshDir: o.sshDir });
  const identity = path.resolve(o.identity ?? path.join(paths.sshDir, "id_ed25519"));
  let operatorKey: PublicKey;
  try {
    configPaths(paths, identity);
    operatorKey = parsePublicKey(await readFile(`${identity}.pub`, "utf8").catch(() => ""), `${identity}.pub`);
  } catch (e) {
    if (e instanceof InputError && /\.pub/.test(e.message)) throw new InputError(`${e.message} (make a key with ssh-keygen -t ed25519, or pass --identity FILE)`);
    throw e;
  }
  const facts = o.relay ?? (await loadRelayFacts(o.relayFile, o.cwd));
  // Without --image the agent is built from images/rtunnel every time (Docker's layer cache
  // makes a rebuild cheap): whatever else carries the default tag here never reaches the device.
  const image = o.image ?? DEFAULT_IMAGE;
  const buildAlways = o.image === undefined;
  const creds = { identityFile: identity, agent: o.agent ?? process.env.SSH_AUTH_SOCK };
  step("inputs checked");

  // 1. The relay, pinned; read-only for now.
  log(`relay ${facts.host}:${facts.port} (${facts.hostKey.fingerprint})`);
  const relay = await RelayAdmin.connect(facts, creds);
  let device: Device | undefined;
  try {
    const registry = await relay.list();
    step("relay connected, registry read");

    // 2. The device, pinned: --device-host-key, else the key an earlier enrollment pinned,
    // else --accept-new shows and takes what it presents.
    const pin = pinArg ?? (await pinnedDeviceKey(paths, name));
    const where = `${host}:${port}`;
    const conn = await connectPinned(
      {
        what: `the device ${name}`,
        host,
        port,
        username: user,
        pin,
        onUnknown: (k) =>
          o.acceptNew
            ? undefined
            : new ExitError(EXIT.hostKey, `the device at ${where} is unknown; its host key is ${k.fingerprint}: check it on the device (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then re-run with --device-host-key ${k.fingerprint} (or --accept-new)`),
        onMismatch: (k) =>
          new ExitError(EXIT.hostKey, `the device at ${where} shows host key ${k.fingerprint}, not the pinned ${pin}: if the device was reinstalled, re-run with --device-host-key ${k.fingerprint}`),
        onAuthFailed: () =>
          new ExitError(EXIT.device, `the device at ${where} refused ${user}'s login with ${identity} (and the ssh-agent): run ssh-copy-id -i ${identity} ${user}@${host} first`),
      },
      creds,
    );
    device = new Device(conn.ssh, name, host);
    log(`device ${name} at ${where} (${conn.hostKey.fingerprint})`);
    const pre: Preflight = await device.preflight({ installDocker: o.installDocker ?? false });
    step("device connected, preflight passed");

    // 3. Names: the device's must be free or already ours; the client's must be a client,
    // and a key the relay already holds as another client keeps that client's name.
    const mine = registry.find((e) => e.name === name);
    if (mine && (mine.kind !== "device" || !pre.deviceKey || mine.fingerprint !== pre.deviceKey.fingerprint)) {
      throw new ExitError(EXIT.relay, `the name ${name} is already taken on the relay by another ${mine.kind === "device" ? "device key" : mine.kind} (${mine.fingerprint}): choose another name, or revoke-device ${name} first`);
    }
    const { client, entry: clientEntry, reused } = enrollClientName(registry, { fingerprint: operatorKey.fingerprint, wanted, explicit: o.client !== undefined });
    if (reused) log(`your key is registered on the relay as client ${client}: keeping that name (not ${wanted})`);

    // 4. The laptop side, planned now (read, rendered with the port the device will have,
    // directories checked writable); written only at the end.
    const laptopState = await readLaptop(paths);
    const laptopChange = (devicePort: number): LaptopChange => ({
      relay: { host: facts.host, port: facts.port, hostKey: facts.hostKey },
      device: { name, port: devicePort, user, hostKey: conn.hostKey },
      identityFile: identity,
    });
    planLaptopFrom(paths, laptopState, laptopChange(mine?.port ?? 65535));
    step("laptop files read and checked");

    // 5. The local image, for the device's platform (still nothing changed anywhere).
    const local = await localImage(image, pre.platform, log, buildAlways);
    step(`local image ${image} ${buildAlways ? "built" : "ready"} for ${pre.platform}`);

    // 6. Changes begin: the device key, made on the device.
    const deviceKey = await device.ensureDeviceKey();
    if (!pre.deviceKey) changed.device.push(`${DEVICE_DIR}/id_ed25519`);
    step("device key");

    // 7. The relay: the device, then this laptop's access to it.
    const added = await relay.addDevice(name, `${deviceKey.type} ${deviceKey.base64}`);
    if (!mine) changed.relay.push(`device ${name}`);
    const granted = clientEntry?.devices ?? [];
    if (!clientEntry || !(clientEntry.all || granted.includes(name))) {
      const devices = [...new Set([...granted, name])].sort();
      await relay.addClient(client, `${operatorKey.type} ${operatorKey.base64}`, devices);
      changed.relay.push(`client ${client} → ${devices.join(",")}`);
    }
    step(`relay: device port ${added.port}`);

    // 8. The agent: image, config, container.
    let restart = false;
    if ((await device.imageId(image)) !== local.id) {
      await pushImage(device, image, local.size, o.progress ?? false);
      changed.device.push(`image ${image}`);
      restart = true;
    }
    step("image on the device");
    // The device reaches the relay where devices do (the demo: by the relay's own address).
    const env = renderAgentEnv({ relayHost: facts.deviceSide.host, relayPort: facts.deviceSide.port, forwardPort: added.port });
    const known = `${knownHostsPattern(facts.deviceSide.host, facts.deviceSide.port)} ${facts.hostKey.type} ${facts.hostKey.base64}\n`;
    for (const [file, text] of [[`${DEVICE_DIR}/rtunnel.env`, env], [`${DEVICE_DIR}/known_hosts`, known]] as const) {
      if (await device.writeFile(file, text)) {
        changed.device.push(file);
        restart = true;
      }
    }
    const state = await device.agentState();
    if (restart || !state || !state.running || state.image !== local.id) {
      await device.startAgent(image);
      changed.device.push("container rtunnel");
    }
    step("agent configured and running");

    // 9. The operator's key on the device account.
    if (await device.authorize(operatorKey, `rtunnel-${client}`)) changed.device.push(`~${pre.user}/.ssh/authorized_keys`);
    step("operator key authorized on the device");

    // 10. Wait for the tunnel, then (only then) write the laptop side planned in step 4.
    const agentDevice = device;
    await waitOnline(relay, name, timeout, () => explainAgent(agentDevice, facts.deviceSide, log));
    step("tunnel online");
    changed.laptop = await applyLaptop(paths, planLaptopFrom(paths, laptopState, laptopChange(added.port)));
    step("laptop ssh_config written");

    const cwd = o.cwd ?? process.cwd();
    const defaultDir = path.join(paths.home, ".ssh");
    let sshCommand = `ssh ${name}`;
    if (path.resolve(paths.sshDir) !== path.resolve(defaultDir)) {
      const rel = path.relative(cwd, paths.config);
      sshCommand = `ssh -F ${rel.startsWith("..") || path.isAbsolute(rel) ? paths.config : rel} ${name}`;
    }
    return {
      name,
      port: added.port,
      relay: { host: facts.host, port: facts.port },
      deviceHostKey: conn.hostKey.fingerprint,
      sshCommand,
      changed,
      timingsMs: timings,
    };
  } finally {
    device?.ssh.dispose();
    relay.dispose();
  }
}

/** The agent image enrollment builds from images/rtunnel when --image is not given. */
export const DEFAULT_IMAGE = "rtunnel/rtunnel:latest";

/** The image to send: built from images/rtunnel when `build` (no --image) or when it is missing here or for another platform. */
async function localImage(image: string, platform: string, log: (l: string) => void, build: boolean): Promise<{ id: string; size: number }> {
  const docker = (args: string[], timeoutMs?: number) =>
    runLocal("docker", args, { timeoutMs }).catch(() => {
      throw new ExitError(EXIT.usage, "the docker command is not installed on this machine: enrollment builds and sends the agent image from here");
    });
  const inspect = async () => {
    const r = await docker(["image", "inspect", "--format", "{{.Id}} {{.Size}} {{.Os}}/{{.Architecture}}", image]);
    if (r.code !== 0) return undefined;
    const [id = "", size = "0", plat = ""] = r.stdout.trim().split(" ");
    return { id, size: Number(size), platform: plat };
  };
  // Docker 20.10's inspect has no Variant: linux/arm stands for arm/v7 and arm/v6 alike.
  const same = (a: string) => a === platform || (a === "linux/arm" && platform.startsWith("linux/arm/"));
  let found = build ? undefined : await inspect();
  if (!found || !same(found.platform)) {
    const context = path.join(repoRoot, "images", "rtunnel");
    log(`building ${image} for ${platform} from ${context}`);
    const r = await docker(["build", "--platform", platform, "--tag", image, context], 30 * 60_000);
    if (r.code !== 0) {
      throw new ExitError(EXIT.usage, `can't build ${image} for ${platform}: ${r.stderr.trim().split("\n").pop() ?? ""} (another architecture needs docker buildx with QEMU, or pass --image)`);
    }
    found = await inspect();
    if (!found) throw new ExitError(EXIT.usage, `docker build made no image ${image}`);
  }
  return { id: found.id, size: found.size };
}

async function pushImage(device: Device, image: string, size: number, progress: boolean): Promise<void> {
  const save = spawnLocal("docker", ["save", image]);
  const saveErr: Buffer[] = [];
  save.stderr.on("data", (b: Buffer) => saveErr.push(b));
  const saved = new Promise<number>((resolve) => save.on("close", (c) => resolve(c ?? 1)));
  const bar = progress
    ? new cliProgress.SingleBar(
        { stream: process.stderr, format: "  image  [{bar}] {percentage}% {value_mb}/{total_mb} MB", noTTYOutput: !process.stderr.isTTY, notTTYSchedule: 2000, hideCursor: true },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const mb = (n: number) => (n / 1e6).toFixed(1);
  let sent = 0;
  // The image's size is an estimate of the `docker save` stream (tar headers add a little):
  // the total grows with the stream rather than showing more than 100%.
  let total = size;
  bar?.start(total, 0, { value_mb: mb(0), total_mb: mb(total) });
  try {
    await device.loadImage(save.stdout, (n) => {
      sent += n;
      if (sent > total) {
        total = sent;
        bar?.setTotal(total);
      }
      bar?.update(sent, { value_mb: mb(sent), total_mb: mb(total) });
    });
  } finally {
    bar?.stop();
  }
  if ((await saved) !== 0) throw new ExitError(EXIT.usage, `docker save ${image} failed: ${Buffer.concat(saveErr).toString().trim()}`);
}

async function waitOnline(relay: RelayAdmin, name: string, timeoutSec: number, explain: () => Promise<string>): Promise<RelayEntry> {
  const deadline = Date.now() + timeoutSec * 1000;
  for (;;) {
    const e = (await relay.list()).find((x) => x.name === name);
    if (e?.online) return e;
    if (Date.now() > deadline) {
      throw new ExitError(EXIT.timeout, `the tunnel of ${name} did not come up within ${timeoutSec} s: ${await explain()}; re-running enrollment is safe`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The agent's state and last lines, printed, and the likely fix as one line (for waitOnline). */
async function explainAgent(device: Device, relay: RelayFacts["deviceSide"], log: (line: string) => void): Promise<string> {
  try {
    const facts = await device.agentFacts();
    const d = diagnoseAgent({ ...facts, relay });
    log(`  the agent on ${device.name}: ${d.state}; its last lines:`);
    for (const line of facts.log) log(`    ${line}`);
    return `${d.state}; ${d.fix}`;
  } catch (e) {
    return `the agent's state could not be read (${e instanceof Error ? e.message : String(e)}): see \`sudo docker logs rtunnel\` on the device`;
  }
}
