// `enroll-device NAME` (DESIGN.md "Operator commands", steps 1-7), in two parts:
//
//   planEnrollment  reads everything (inputs, relay, device, the laptop's ~/.ssh files) and
//                   returns every change it would make, in order, laptop writes included;
//                   a bad input, a wrong host key, a refused admin key, a taken name, a
//                   device that can't take part or an unreadable ~/.ssh/config stops it here,
//                   before any change anywhere. `--dry-run` prints this plan and stops.
//   applyEnrollment makes those changes: the device (Docker if asked, its key), the relay,
//                   the agent (image, files, container), the operator's key on the device;
//                   waits for the tunnel; then writes the laptop side, read again just
//                   before, so an edit made meanwhile is kept.
//
// Every change is skipped when it is already there, so a second run changes nothing.
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { agentPath, renderAgentEnv, renderAgentKnownHosts } from "../../lib/contract/agent.ts";
import { InputError } from "../../lib/input.ts";
import { fingerprintOf, parsePublicKey, type PublicKey } from "../../lib/keys.ts";
import { Device } from "../device/device.ts";
import { diagnoseAgent } from "../device/diagnosis.ts";
import { CONTEXT_LABEL } from "../../lib/docker/context.ts";
import { platformInfo } from "../../lib/platform.ts";
import { agentContext, buildLocal, crossBuildProblem, DEFAULT_IMAGE, defaultImage, inspectLocal, samePlatform, sendImage, type Sent } from "../device/image.ts";
import { DockerRuntime, platformOfMachine, type AgentFile, type AgentRuntime } from "../device/runtime.ts";
import { clockProblem as clockProblemOf, describeClock } from "../device/certs.ts";
import { dropInSections, loopbackConsequence, planDropIn, SSHD_DROP_IN, type SshdChange, type SshdDirective, type SshdState } from "../device/sshd.ts";
import { ExitError, EXIT } from "../errors.ts";
import { applyLaptop, configPaths, controlPathFor, laptopModel, laptopPaths, planLaptopWrites, readLaptop, type LaptopPaths } from "../laptop/files.ts";
import { hostKeyAlias as hostKeyAliasOf, pinnedDeviceKey, RELAY_ALIAS, validateDeviceName, withDevice, withRelay as withRelayHop, type LaptopModel } from "../laptop/model.ts";
import { RelayAdmin } from "../relay/admin.ts";
import { loadRelayFacts, type RelayFacts } from "../relay/facts.ts";
import type { ClientListing, DeviceListing } from "../relay/protocol.ts";
import { enrollClientName, keyHeldElsewhere } from "../relay/registry.ts";
import type { FleetOptions } from "./fleet.ts";
import { certificatesToInstall, certifiedHostKeyFingerprint, loadFleetCa, planDeviceCerts, plannedCertificates, recordDevice, willHaveHostCert, type DeviceCertPlan } from "./certs.ts";
import { connectPinned } from "../ssh.ts";
import { parseHostKeyPin, validateHost, validateName, validatePort, validateUser } from "../validate.ts";

export { DEFAULT_IMAGE };

export interface EnrollOptions extends Omit<FleetOptions, "log"> {
  name: string;
  /** the device's LAN address */
  host: string;
  port?: number | string;
  user?: string;
  acceptNew?: boolean;
  /** SHA256:... or a public key line */
  deviceHostKey?: string;
  /** the device agent image, used as it is (built from images/rtunnel only when missing); without it, DEFAULT_IMAGE-PLATFORM built from images/rtunnel every time */
  image?: string;
  /** the platform to build the agent image for, instead of the one the device's Docker says (linux/arm64, linux/arm/v7, linux/arm/v5, linux/amd64) */
  platform?: string;
  /** the agent image's base instead of its Dockerfile's `FROM debian:trixie-slim` (a registry mirror, a local base) */
  baseImage?: string;
  /** where the agent image is built: here (default; cross-built under emulation for another architecture) or on the device */
  buildOn?: "laptop" | "device";
  installDocker?: boolean;
  /** this laptop's name on the relay (its `jump` key) */
  client?: string;
  /** seconds to wait for the tunnel */
  timeout?: number | string;
  /** render the relay hop without ControlMaster (remembered by later renders) */
  noMultiplex?: boolean;
  /** human progress (stderr); quiet under --json */
  log?: (line: string) => void;
  progress?: boolean;
}

export interface EnrollResult {
  name: string;
  port: number;
  relay: { host: string; port: number };
  deviceHostKey: string;
  platform: string;
  sshCommand: string;
  changed: { device: string[]; relay: string[]; laptop: string[] };
  /**
   * the agent image: sent (bytes on the wire, before compression, and time), or already there,
   * or built on the device (`builtOn: "device"`, the context's bytes and the build's time)
   */
  image: { sent: false; builtOn?: "device"; contextBytes?: number; ms?: number } | ({ sent: true } & Sent);
  /** with a fleet CA (issue 15): what the device's certificates are now, and its clock */
  certificates?: EnrollCertificates;
  timingsMs: Record<string, number>;
}

/** The certificate part of an enrollment, for --json (plan and result). */
export interface EnrollCertificates {
  /** its host certificate: signed now, kept, or none (the laptop keeps a pinned key) */
  hostCert: "sign" | "signed" | "keep" | "none";
  reason: string;
  /** the host certificate's serial and end, once applied */
  serial?: string;
  validBefore?: string;
  krlVersion: number;
  clock: { offsetSeconds: number; uncertaintySeconds: number; problem?: string };
}

/** One change the plan would make, in order. */
export interface PlannedChange {
  where: "device" | "relay" | "laptop";
  what: string;
}

export interface EnrollPlan {
  name: string;
  client: string;
  relay: RelayFacts;
  device: { host: string; port: number; user: string; hostKey: PublicKey };
  /** the relay port of the device: known when it is registered already */
  port?: number;
  platform: string;
  platformReason: string;
  image: string;
  /** where the agent image is built, or "none" when --image names one that is here already */
  build: "laptop" | "device" | "none";
  /** the agent image's base, when --base-image replaced its Dockerfile's */
  baseImage?: string;
  /** sha256 of the agent's build context (its image's rtunnel.context label) */
  context: string;
  /** the device's sshd drop-in for tunnel connections; absent when the device runs no OpenSSH sshd */
  sshd?: { version: string; dropIn: string; directives: Pick<SshdDirective, "keyword" | "value" | "scope">[]; unchanged: boolean };
  /** with a fleet CA: the device's certificates (see EnrollCertificates) */
  certificates?: EnrollCertificates;
  changes: PlannedChange[];
  /** the laptop files it will write (rendered with the port the relay gives) */
  laptopFiles: string[];
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
  let platform: string | undefined;
  if (o.platform !== undefined) {
    if (/^linux\/arm\/v6$/i.test(o.platform.trim())) throw new InputError(`--platform linux/arm/v6: Debian publishes no image for it; Debian's armel runs on ARMv6 (Pi Zero, Pi 1): use --platform linux/arm/v5`);
    platform = platformInfo(o.platform)?.platform;
    if (!platform) throw new InputError(`--platform must be linux/amd64, linux/arm64, linux/arm/v7 or linux/arm/v5 (got ${JSON.stringify(o.platform)})`);
  }
  const buildOn = o.buildOn ?? "laptop";
  if (buildOn !== "laptop" && buildOn !== "device") throw new InputError(`--build-on must be laptop or device (got ${JSON.stringify(o.buildOn)})`);
  if (buildOn === "device" && o.image !== undefined) throw new InputError("--image names an image to send, --build-on device builds one on the device: give one of them");
  if (o.baseImage !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/.test(o.baseImage)) throw new InputError(`--base-image must be an image reference like mirror.example.com/library/debian:trixie-slim (got ${JSON.stringify(o.baseImage)})`);
  if (o.baseImage !== undefined && o.image !== undefined) throw new InputError("--base-image is for the agent image enrollment builds; --image names one built already: give one of them");
  return { name, host, port, user, client, pin, timeout, platform, buildOn };
}

/** The pieces a plan holds on to for its apply: open connections, texts read, decisions. */
interface Session {
  o: EnrollOptions;
  log: (line: string) => void;
  paths: LaptopPaths;
  identity: string;
  operatorKey: PublicKey;
  relay: RelayAdmin;
  device: Device;
  runtime: AgentRuntime;
  registry: { mine?: DeviceListing; clientEntry?: ClientListing };
  deviceKey?: PublicKey;
  /** the device's sshd: what to write (nothing when it is in place) */
  sshd?: SshdChange & { directives: SshdDirective[] };
  /** the device's sshd as the plan read it (a new host certificate is planned again from it) */
  sshdState?: SshdState;
  /** with a fleet CA: the device's certificates */
  certs?: DeviceCertPlan;
  installDocker: boolean;
  context: Buffer;
  timeout: number;
  /** this enrollment's change to a laptop model (applied to the files as they are when written) */
  laptopChange: (model: LaptopModel, port: number) => LaptopModel;
  timings: Record<string, number>;
  step: (label: string) => void;
}

/** A plan and what it needs to be applied; dispose() closes its connections. */
export interface PlannedEnrollment {
  plan: EnrollPlan;
  session: Session;
  dispose(): void;
}

/** Read-only: everything enrollment would change, and why it can (or the one line why not). */
export async function planEnrollment(o: EnrollOptions): Promise<PlannedEnrollment> {
  const log = o.log ?? (() => {});
  const timings: Record<string, number> = {};
  let t0 = Date.now();
  const step = (label: string) => {
    const now = Date.now();
    timings[label] = now - t0;
    log(`  ${label} (${((now - t0) / 1000).toFixed(1)} s)`);
    t0 = now;
  };

  // Inputs, all of them, before talking to anyone.
  const { name, host, port, user, client: wanted, pin: pinArg, timeout, platform: platformArg, buildOn } = inputs(o);
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
  const context = await agentContext(o.baseImage);
  const creds = { identityFile: identity, agent: o.agent ?? process.env.SSH_AUTH_SOCK };
  // Fleet certificates (issue 15) when this machine has the fleet's CA: none, none of this.
  const fleetCa = await loadFleetCa(paths.sshDir);
  step("inputs checked");

  // The relay, pinned.
  log(`relay ${facts.host}:${facts.port} (${facts.hostKey.fingerprint})`);
  const relay = await RelayAdmin.connect(facts, creds);
  let device: Device | undefined;
  try {
    const registry = await relay.list();
    step("relay connected, registry read");

    // The laptop's files, read (and checked writable) now; the model tells the device's pin.
    const laptopState = await readLaptop(paths);
    const model = laptopModel(paths, laptopState, identity);
    const pinnedKey = pinnedDeviceKey(model, name);

    // The device, pinned: --device-host-key, else the key an earlier enrollment pinned (or,
    // once the laptop trusts the host CA for it, the key its host certificate certifies), else
    // --accept-new shows and takes what it presents.
    const pin = pinArg ?? (pinnedKey ? fingerprintOf(Buffer.from(pinnedKey.base64, "base64")) : fleetCa ? await certifiedHostKeyFingerprint(fleetCa.ca, name, fleetCa.records) : undefined);
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
    const runtime = new DockerRuntime(device);
    const facts0 = await runtime.preflight();
    const account = await device.whoami();
    let installDocker = false;
    if (!facts0.installed) {
      if (!o.installDocker) {
        throw new ExitError(EXIT.device, `Docker is not installed on the device ${name}: install it (Debian/Raspberry Pi OS: sudo apt-get install docker.io) or re-run with --install-docker`);
      }
      if (!(await runtime.installCommand())) {
        throw new ExitError(EXIT.device, `--install-docker doesn't know the distribution of the device ${name}: install Docker by hand and re-run`);
      }
      installDocker = true;
    }
    await device.useRoot();
    if (facts0.installed && !facts0.running) {
      throw new ExitError(EXIT.device, `Docker's daemon does not answer on the device ${name}: start it (sudo systemctl enable --now docker) and re-run`);
    }
    const detected = facts0.platform ?? platformOfMachine(account.machine);
    const detectedReason = facts0.platformReason ?? `uname -m says ${account.machine}`;
    const platform = platformArg ?? detected;
    const platformReason = platformArg ? `--platform${detected && detected !== platformArg ? `, though ${detectedReason} (${detected})` : ""}` : detectedReason;
    if (!platform) throw new ExitError(EXIT.device, `the device ${name} is a ${account.machine || "unknown"} machine (${platformReason}): rtunnel's image is built for amd64, arm64, armv7 and armv6 (as armv5), or pass --platform`);
    log(`platform ${platform}: ${platformReason}`);
    const deviceKey = await device.deviceKey();

    // The agent image. Without --image it is built from images/rtunnel every time (Docker's
    // layer cache makes a rebuild cheap), so whatever else carries the default tag here never
    // reaches the device; with --build-on device it is built there unless the device's image
    // carries this context's label. Building here for another architecture needs this
    // machine's Docker to run that architecture's programs: asked now, before any change.
    const image = o.image ?? defaultImage(platform);
    let build: EnrollPlan["build"] = buildOn;
    let deviceImageCurrent = false;
    if (buildOn === "device") {
      deviceImageCurrent = (await runtime.imageLabel(image, CONTEXT_LABEL).catch(() => undefined)) === context.hash;
    } else {
      if (o.image !== undefined) {
        const found = await inspectLocal(o.image);
        if (found && samePlatform(found.platform, platform)) build = "none";
      }
      if (build === "laptop") {
        const problem = await crossBuildProblem(platform);
        if (problem) throw new ExitError(EXIT.usage, problem);
      }
    }
    // The device's own sshd: tunnel connections all come from loopback (see device/sshd.ts).
    const sshdFound = await device.sshd(user);
    if (sshdFound.kind === "broken") {
      const ours = sshdFound.error.includes(SSHD_DROP_IN);
      throw new ExitError(
        EXIT.device,
        `the sshd configuration of the device ${name} fails \`sshd -t\` already (${sshdFound.error}): ${ours ? `rtunnel's own ${SSHD_DROP_IN} is broken (edited by hand?): remove it (sudo rm ${SSHD_DROP_IN}) and re-run` : "fix it and re-run"}; nothing was changed`,
      );
    }
    if (sshdFound.kind === "absent") log(`the device ${name} runs no OpenSSH sshd (no sshd found): its sshd is left as it is${fleetCa ? "; it gets no certificates" : ""}`);
    // With a CA: its certificate files in the drop-in, its host certificate, its clock.
    const certs =
      fleetCa && sshdFound.kind === "ok" ? await planDeviceCerts({ fleet: fleetCa, device, name, account: user, presented: conn.hostKey, state: sshdFound.state, agentSock: creds.agent }) : undefined;
    if (certs) {
      log(describeClock(certs.clock));
      if (certs.clockProblem) log(`warning: ${certs.clockProblem}`);
    }
    const sshd = sshdFound.kind === "ok" ? planDropIn(sshdFound.state, user, dropInSections(certs && plannedCertificates(certs), user)) : undefined;
    if (sshd?.conflicts.length) throw new ExitError(EXIT.device, `the device ${name} can't take fleet certificates as it is: ${sshd.conflicts[0]}; nothing was changed`);
    step(`device connected, preflight passed (${platform}: ${platformReason}${sshdFound.kind === "ok" ? `; ${sshdFound.state.version || "sshd"}` : ""})`);

    // Names: the device's must be free or already ours; the client's must be a client, and a
    // key the relay already holds as another client keeps that client's name.
    const mine = registry.find((e) => e.name === name);
    if (mine && (mine.kind !== "device" || !deviceKey || mine.fingerprint !== deviceKey.fingerprint)) {
      throw new ExitError(EXIT.relay, `the name ${name} is already taken on the relay by another ${mine.kind === "device" ? "device key" : mine.kind} (${mine.fingerprint}): choose another name, or revoke-device ${name} first`);
    }
    const heldBy = deviceKey && keyHeldElsewhere(registry, deviceKey.fingerprint, name);
    if (heldBy) {
      throw new ExitError(EXIT.relay, `the device at ${where} is enrolled on the relay as ${heldBy.kind} ${heldBy.name} (its key ${heldBy.fingerprint}): enroll it as ${heldBy.name}, or revoke-device ${heldBy.name} first`);
    }
    const { client, entry: clientEntry, reused } = enrollClientName(registry, { fingerprint: operatorKey.fingerprint, wanted, explicit: o.client !== undefined });
    if (reused) log(`your key is registered on the relay as client ${client}: keeping that name (not ${wanted})`);

    // The laptop side, rendered with the port the device will have (now, to fail early).
    // The relay hop multiplexed (one handshake instead of two for every ssh after the first),
    // unless the user said --no-multiplex, now or at an earlier enrollment, or the platform
    // can't (Windows; a socket path too long).
    const controlPath = controlPathFor(paths);
    const off = o.noMultiplex || model.relays.get(RELAY_ALIAS)?.multiplex === "off";
    if (!off && !controlPath) log(`the relay hop is not multiplexed: ${paths.windows ? "Windows' OpenSSH has no ControlMaster" : `a control socket under ${paths.sshDir} would exceed the 104-byte socket path limit`}`);
    const hop = off ? { multiplex: "off" as const } : controlPath ? { multiplex: "on" as const, controlPath } : {};
    // A device with a host certificate is trusted through the host CA for its name, its pin removed.
    const trust = certs && fleetCa && willHaveHostCert(certs) ? { hostCa: fleetCa.ca.hostCa } : { hostKey: conn.hostKey };
    const laptopChange = (m: LaptopModel, devicePort: number) => withDevice(withRelayHop(m, facts, hop), { name, port: devicePort, user, ...trust });
    const laptopWrites = planLaptopWrites(paths, laptopState, laptopChange(model, mine?.kind === "device" ? mine.port : 65535));
    step("laptop files read and checked");

    const changes: PlannedChange[] = [];
    if (sshd?.writes.length) {
      for (const line of sshd.summary) changes.push({ where: "device", what: `sshd: ${line}` });
      const consequence = loopbackConsequence(sshd.directives);
      changes.push({ where: "device", what: `sshd: checked with sshd -t (or put back), then reloaded; sessions stay${consequence ? `; ${consequence}` : ""}` });
    } else if (sshd) changes.push({ where: "device", what: `sshd: keep ${SSHD_DROP_IN}` });
    if (certs) changes.push({ where: "device", what: `certificates: ${certHostLine(certs, name)}; KRL version ${certs.fleet.krl.version}` });
    if (installDocker) changes.push({ where: "device", what: `install Docker: ${await runtime.installCommand()}` });
    changes.push({ where: "device", what: deviceKey ? `keep the device key ${deviceKey.fingerprint}` : `make the device key ${agentPath("key")} (on the device)` });
    changes.push({ where: "relay", what: mine ? `keep device ${name} (port ${mine.kind === "device" ? mine.port : "?"})` : `add device ${name} (the relay gives it a port)` });
    const granted = clientEntry ? (clientEntry.all ? "all" : clientEntry.devices) : [];
    if (granted !== "all" && !granted.includes(name)) changes.push({ where: "relay", what: `${clientEntry ? "grant" : "add"} client ${client} → ${[...new Set([...granted, name])].sort().join(",")}` });
    const from = `images/rtunnel${o.baseImage ? ` on ${o.baseImage}` : ""} (context ${context.hash.slice(0, 19)})`;
    if (build === "device") changes.push({ where: "device", what: `agent image ${image} for ${platform}: ${deviceImageCurrent ? "kept (it carries this context's label)" : `built on the device from ${from}, the context sent over this connection`}` });
    else changes.push({ where: "device", what: `agent image ${image} for ${platform}: ${build === "laptop" ? `built here from ${from}, ` : ""}sent unless the device has it` });
    changes.push({ where: "device", what: `agent files ${agentPath("env")}, ${agentPath("knownHosts")}: written where they differ` });
    changes.push({ where: "device", what: "agent container: (re)started when its image or files changed, or it is not running" });
    changes.push({ where: "device", what: `${account.user}'s authorized_keys: the operator's key ${operatorKey.fingerprint}, unless it is there` });
    for (const w of laptopWrites.writes) changes.push({ where: "laptop", what: `write ${w.file}` });
    if (laptopWrites.backup) changes.push({ where: "laptop", what: `back up ${paths.config} to ${paths.backup}` });

    const plan: EnrollPlan = {
      name, client, relay: facts, device: { host, port, user, hostKey: conn.hostKey },
      ...(mine?.kind === "device" ? { port: mine.port } : {}),
      platform, platformReason, image, build, ...(o.baseImage ? { baseImage: o.baseImage } : {}), context: context.hash,
      changes, laptopFiles: laptopWrites.writes.map((w) => w.file),
      ...(sshd && sshdFound.kind === "ok"
        ? { sshd: { version: sshdFound.state.version, dropIn: SSHD_DROP_IN, directives: sshd.directives.map(({ keyword, value, scope }) => ({ keyword, value, scope })), unchanged: !sshd.writes.length } }
        : {}),
      ...(certs ? { certificates: enrollCertificates(certs) } : {}),
    };
    const session: Session = {
      o, log, paths, identity, operatorKey, relay, device, runtime,
      registry: { ...(mine?.kind === "device" ? { mine } : {}), ...(clientEntry ? { clientEntry } : {}) },
      ...(deviceKey ? { deviceKey } : {}),
      ...(sshd ? { sshd } : {}),
      ...(sshdFound.kind === "ok" ? { sshdState: sshdFound.state } : {}),
      ...(certs ? { certs } : {}),
      installDocker, context: context.tar, timeout, laptopChange, timings, step,
    };
    const d = device;
    return { plan, session, dispose: () => { d.ssh.dispose(); relay.dispose(); } };
  } catch (e) {
    device?.ssh.dispose();
    relay.dispose();
    throw e;
  }
}

/** The plan as a person reads it (--dry-run). */
export function renderPlan(p: EnrollPlan): string {
  const lines = [
    `enroll ${p.name}: device ${p.device.user}@${p.device.host}:${p.device.port} (${p.device.hostKey.fingerprint}), ${p.platform} (${p.platformReason})`,
    `relay ${p.relay.host}:${p.relay.port} (${p.relay.hostKey.fingerprint}); this laptop is client ${p.client}`,
    "it would:",
    ...p.changes.map((c) => `  ${c.where.padEnd(6)}  ${c.what}`),
    "nothing was changed (--dry-run)",
  ];
  return `${lines.join("\n")}\n`;
}

/** Makes the changes of a plan; the laptop side last, once the tunnel is up. */
export async function applyEnrollment({ plan, session: s }: PlannedEnrollment): Promise<EnrollResult> {
  const { o, log, step, device, runtime, relay } = s;
  const changed: EnrollResult["changed"] = { device: [], relay: [], laptop: [] };

  // With a CA, the device's host key is signed first (the host CA in ssh-agent): the drop-in's
  // files then carry the new certificate, planned again from the state the plan read.
  let sshdChange = s.sshd;
  let installed: Awaited<ReturnType<typeof certificatesToInstall>> | undefined;
  if (s.certs && s.sshdState) {
    installed = await certificatesToInstall(s.certs, s.o.agent ?? process.env.SSH_AUTH_SOCK);
    if (installed.signed) {
      sshdChange = planDropIn(s.sshdState, plan.device.user, dropInSections(installed.certs, plan.device.user));
      log(`device certificates: host key ${s.certs.hostKey?.fingerprint} signed by the host CA (serial ${installed.hostCert?.serial}, valid until ${installed.hostCert?.validBefore})`);
    }
  }

  // The device's sshd first: the cheapest change to put back, and one that must be in place
  // before the tunnel carries a single connection (OpenSSH 10 penalises loopback otherwise).
  if (sshdChange?.writes.length) {
    const how = await device.changeSshd(sshdChange);
    changed.device.push(...sshdChange.writes.map((w) => w.path));
    for (const line of sshdChange.summary) log(`device sshd: ${line}`);
    const consequence = loopbackConsequence(sshdChange.directives);
    if (consequence) log(`device sshd: ${consequence}`);
    step(`device sshd set for tunnel connections (${how})`);
  }
  let certificates: EnrollCertificates | undefined;
  if (s.certs && installed) {
    // What the device now has, in devices.json (status reads it; revoke-cert pushes from it).
    const before = s.certs.fleet.records[plan.name];
    // Its clock is recorded again when its verdict changes (right, behind, ahead), not for every jitter of a second.
    const verdict = (c: { offsetSeconds: number; uncertaintySeconds: number }) => (clockProblemOf(c) ? (c.offsetSeconds < 0 ? "behind" : "ahead") : "right");
    const clockChanged = !before?.clock || verdict(before.clock) !== verdict(s.certs.clock);
    if (before?.krlVersion !== s.certs.fleet.krl.version || before?.hostCert?.serial !== installed.hostCert?.serial || clockChanged) {
      await recordDevice(s.certs.fleet.ca, plan.name, { krl: s.certs.fleet.krl, hostCert: installed.hostCert, clock: s.certs.clock });
    }
    certificates = { ...enrollCertificates(s.certs), ...(installed.signed ? { hostCert: "signed" as const } : {}), ...(installed.hostCert ? { serial: installed.hostCert.serial, validBefore: installed.hostCert.validBefore } : {}) };
    step(`device certificates in place (${certHostLine(s.certs, plan.name)})`);
  }

  if (s.installDocker) {
    log(`installing Docker on ${plan.name}`);
    await runtime.installRuntime();
    const after = await runtime.preflight();
    if (!after.running) throw new ExitError(EXIT.device, `Docker was installed on the device ${plan.name} but its daemon does not answer: start it (sudo systemctl enable --now docker) and re-run`);
    changed.device.push("docker (installed)");
    step("Docker installed");
  }

  // The local image, for the device's platform (unless the device builds its own).
  let local: { id: string; size: number } | undefined;
  if (plan.build === "laptop") {
    local = await buildLocal(plan.image, plan.platform, { tar: s.context, hash: plan.context }, log);
    step(`local image ${plan.image} built for ${plan.platform}`);
  } else if (plan.build === "none") {
    local = await inspectLocal(plan.image);
    if (!local) throw new ExitError(EXIT.usage, `the image ${plan.image} is gone from this machine since the plan: re-run enrollment`);
    step(`local image ${plan.image} ready for ${plan.platform}`);
  }

  // The device key, made on the device.
  const deviceKey = await device.ensureDeviceKey();
  if (!s.deviceKey) changed.device.push(agentPath("key"));
  step("device key");

  // The relay: the device, then this laptop's access to it.
  const added = await relay.addDevice(plan.name, deviceKey);
  if (!s.registry.mine) changed.relay.push(`device ${plan.name}`);
  const entry = s.registry.clientEntry;
  const granted = entry ? (entry.all ? "all" : entry.devices) : [];
  if (granted !== "all" && !granted.includes(plan.name)) {
    const devices = [...new Set([...granted, plan.name])].sort();
    await relay.addClient(plan.client, s.operatorKey, devices);
    changed.relay.push(`client ${plan.client} → ${devices.join(",")}`);
  }
  step(`relay: device port ${added.port}`);

  // The agent: image, config, container.
  let restart = false;
  let image: EnrollResult["image"] = { sent: false };
  if (local && (await runtime.imageId(plan.image)) !== local.id) {
    image = { sent: true, ...(await sendImage(runtime, plan.image, local.size, o.progress ?? false)) };
    log(`  image: ${(image.wireBytes / 1e6).toFixed(1)} MB sent (${(image.rawBytes / 1e6).toFixed(1)} MB before gzip) in ${(image.ms / 1000).toFixed(1)} s`);
    changed.device.push(`image ${plan.image}`);
    restart = true;
  }
  if (!local) {
    // Built where it runs, from the context sent over this connection; an image that carries
    // this context's label is this build already (its id differs from any other build's).
    if ((await runtime.imageLabel(plan.image, CONTEXT_LABEL)) !== plan.context) {
      log(`building ${plan.image} for ${plan.platform} on the device (${(s.context.length / 1e3).toFixed(0)} kB of build context sent; the device pulls ${plan.baseImage ?? "debian:trixie-slim"} itself)`);
      const started = Date.now();
      await runtime.buildImage({ image: plan.image, platform: plan.platform, context: s.context, labels: { [CONTEXT_LABEL]: plan.context } });
      image = { sent: false, builtOn: "device", contextBytes: s.context.length, ms: Date.now() - started };
      changed.device.push(`image ${plan.image} (built on the device)`);
      restart = true;
    }
  }
  const imageId = local?.id ?? (await runtime.imageId(plan.image));
  if (!imageId) throw new ExitError(EXIT.device, `the agent image ${plan.image} is not on the device ${plan.name} after it was ${local ? "sent" : "built"}: see \`sudo docker images\` there`);
  step("image on the device");
  // The device reaches the relay where devices do (the demo: by the relay's own address).
  const files: AgentFile[] = [
    { path: agentPath("env"), text: renderAgentEnv({ relay: plan.relay.deviceSide, forwardPort: added.port }) },
    { path: agentPath("knownHosts"), text: renderAgentKnownHosts(plan.relay.deviceSide, plan.relay.hostKey) },
  ];
  const written = await runtime.configure(files);
  changed.device.push(...written);
  if (written.length) restart = true;
  const state = await runtime.state();
  if (restart || !state || !state.running || state.image !== imageId) {
    await runtime.start(plan.image);
    changed.device.push("container rtunnel");
  }
  step("agent configured and running");

  // The operator's key on the device account.
  if (await device.authorize(s.operatorKey, `rtunnel-${plan.client}`)) changed.device.push(`~${plan.device.user}/.ssh/authorized_keys`);
  step("operator key authorized on the device");

  // Wait for the tunnel, then (only then) the laptop side, from the files as they are now.
  await waitOnline(relay, plan.name, s.timeout, (last) => explainAgent(runtime, plan.name, plan.relay.deviceSide, last, log));
  step("tunnel online");
  // The files as they are now (an edit made while we waited is kept), with our change on top.
  const now = await readLaptop(s.paths);
  changed.laptop = await applyLaptop(s.paths, planLaptopWrites(s.paths, now, s.laptopChange(laptopModel(s.paths, now, s.identity), added.port)));
  step("laptop ssh_config written");

  const cwd = o.cwd ?? process.cwd();
  const defaultDir = path.join(s.paths.home, ".ssh");
  let sshCommand = `ssh ${plan.name}`;
  if (path.resolve(s.paths.sshDir) !== path.resolve(defaultDir)) {
    const rel = path.relative(cwd, s.paths.config);
    sshCommand = `ssh -F ${rel.startsWith("..") || path.isAbsolute(rel) ? s.paths.config : rel} ${plan.name}`;
  }
  return {
    name: plan.name,
    port: added.port,
    relay: { host: plan.relay.host, port: plan.relay.port },
    deviceHostKey: plan.device.hostKey.fingerprint,
    platform: plan.platform,
    sshCommand,
    changed,
    image,
    ...(certificates ? { certificates } : {}),
    timingsMs: s.timings,
  };
}

/** The host certificate's part of the plan, as one phrase. */
function certHostLine(c: DeviceCertPlan, name: string): string {
  if (!c.hostCert) return `no host certificate (${c.noHostCert})`;
  return c.hostCert.sign ? `sign its host key ${c.hostKey?.fingerprint} for ${hostKeyAliasOf(name)}, 90 days (${c.hostCert.reason})` : `keep its host certificate (${c.hostCert.reason})`;
}

function enrollCertificates(c: DeviceCertPlan): EnrollCertificates {
  return {
    hostCert: !c.hostCert ? "none" : c.hostCert.sign ? "sign" : "keep",
    reason: c.hostCert?.reason ?? c.noHostCert ?? "",
    krlVersion: c.fleet.krl.version,
    clock: { offsetSeconds: c.clock.offsetSeconds, uncertaintySeconds: c.clock.uncertaintySeconds, ...(c.clockProblem ? { problem: c.clockProblem } : {}) },
  };
}

/** Plan, then apply (or only plan, with `dryRun`). */
export async function enrollDevice(o: EnrollOptions & { dryRun?: false }): Promise<EnrollResult>;
export async function enrollDevice(o: EnrollOptions & { dryRun: true }): Promise<EnrollPlan>;
export async function enrollDevice(o: EnrollOptions & { dryRun?: boolean }): Promise<EnrollResult | EnrollPlan> {
  const planned = await planEnrollment(o);
  try {
    if (o.dryRun) return planned.plan;
    return await applyEnrollment(planned);
  } finally {
    planned.dispose();
  }
}

/** Until the relay says the device is online: its tunnel listens AND the device's sshd answers through it. */
async function waitOnline(relay: RelayAdmin, name: string, timeoutSec: number, explain: (last?: DeviceListing) => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutSec * 1000;
  for (;;) {
    const e = (await relay.list()).find((x): x is DeviceListing => x.name === name && x.kind === "device");
    if (e?.online) return;
    if (Date.now() > deadline) {
      throw new ExitError(EXIT.timeout, `the tunnel of ${name} did not come up within ${timeoutSec} s: ${await explain(e)}; re-running enrollment is safe`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The agent's state and last lines, printed, and the likely fix as one line (for waitOnline). */
async function explainAgent(runtime: AgentRuntime, name: string, relay: RelayFacts["deviceSide"], last: DeviceListing | undefined, log: (line: string) => void): Promise<string> {
  try {
    const facts = await runtime.facts();
    const d = diagnoseAgent({ ...facts, relay, ...(last ? { tunnel: { listening: last.listening, banner: last.banner } } : {}) });
    log(`  the agent on ${name}: ${d.state}; its last lines:`);
    for (const line of facts.log) log(`    ${line}`);
    return `${d.state}; ${d.fix}`;
  } catch (e) {
    return `the agent's state could not be read (${e instanceof Error ? e.message : String(e)}): see \`sudo docker logs rtunnel\` on the device`;
  }
}
