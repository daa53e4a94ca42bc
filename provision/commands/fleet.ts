// What the fleet commands share: the relay facts, this laptop's paths, key and ssh model, the
// admin connection, and a connection to a device's own sshd THROUGH its tunnel (jump@relay,
// then 127.0.0.1:PORT), so an operator manages the fleet from anywhere, not only the LAN.
import path from "node:path";
import type { NodeSSH } from "node-ssh";
import { Device } from "../device/device.ts";
import { DockerRuntime, type AgentRuntime } from "../device/runtime.ts";
import { ExitError, EXIT } from "../errors.ts";
import { closeRelayMaster, laptopModel, laptopPaths, readLaptop, type LaptopPaths, type LaptopState } from "../laptop/files.ts";
import { deviceHostCa, JUMP_USER, pinnedDeviceKey, type DeviceHost, type LaptopModel } from "../laptop/model.ts";
import { loadCa } from "../ca/ca.ts";
import { certifiedHostKeyFingerprint } from "./certs.ts";
import { connectRelay, RelayAdmin } from "../relay/admin.ts";
import { loadRelayFacts, type RelayFacts } from "../relay/facts.ts";
import { connectPinned, type Credentials } from "../ssh.ts";
import { fingerprintOf } from "../../lib/keys.ts";

export interface FleetOptions {
  relayFile?: string;
  relay?: RelayFacts;
  identity?: string;
  agent?: string;
  home?: string;
  sshDir?: string;
  cwd?: string;
  /** human progress and warnings (stderr) */
  log?: (line: string) => void;
}

export interface Fleet {
  facts: RelayFacts;
  paths: LaptopPaths;
  identity: string;
  creds: Credentials;
  log: (line: string) => void;
}

/** The facts, paths and credentials of a command; reads nothing from the relay yet. */
export async function openFleet(o: FleetOptions, facts?: RelayFacts): Promise<Fleet> {
  const paths = laptopPaths({ home: o.home, sshDir: o.sshDir });
  const identity = path.resolve(o.identity ?? path.join(paths.sshDir, "id_ed25519"));
  return {
    facts: facts ?? o.relay ?? (await loadRelayFacts(o.relayFile, o.cwd)),
    paths,
    identity,
    creds: { identityFile: identity, agent: o.agent ?? process.env.SSH_AUTH_SOCK },
    log: o.log ?? (() => {}),
  };
}

/** This laptop's files and their model, read (and checked writable) before any change. */
export async function readLaptopSide(f: Fleet): Promise<{ state: LaptopState; model: LaptopModel }> {
  const state = await readLaptop(f.paths);
  return { state, model: laptopModel(f.paths, state, f.identity) };
}

/** Runs `fn` with the admin connection open; closes it whatever happens. */
export async function withRelay<T>(f: Fleet, fn: (relay: RelayAdmin) => Promise<T>): Promise<T> {
  const relay = await RelayAdmin.connect(f.facts, f.creds);
  try {
    return await fn(relay);
  } finally {
    relay.dispose();
  }
}

export interface TunnelDevice {
  device: Device;
  runtime: AgentRuntime;
  dispose(): void;
}

/**
 * The device's own sshd through its tunnel: jump@relay (this laptop's client key), a
 * direct-tcpip channel to 127.0.0.1:PORT, then ssh over that channel with the device's host
 * key pinned to known_hosts.rtunnel. Throws ExitError(device) when any hop fails.
 */
export async function deviceThroughTunnel(f: Fleet, model: LaptopModel, entry: Pick<DeviceHost, "name" | "port" | "user">): Promise<TunnelDevice> {
  const pin = await devicePin(f, model, entry.name);
  if (!pin) throw new ExitError(EXIT.hostKey, `no pinned host key for ${entry.name} in ${f.paths.knownHosts}: enroll it from this laptop first`);
  const jump = await connectRelay(f.facts, f.creds, {
    username: JUMP_USER,
    what: "the relay (jump)",
    onAuthFailed: () => new ExitError(EXIT.device, `the relay's jump account refused ${f.identity}: this laptop is not a client granted ${entry.name}`),
  });
  let inner: NodeSSH | undefined;
  try {
    const channel = await jump.forwardOut("127.0.0.1", 0, "127.0.0.1", entry.port).catch((e: Error) => {
      throw new ExitError(EXIT.device, `the relay could not open ${entry.name}'s tunnel (127.0.0.1:${entry.port}): ${e.message} (is the device online?)`);
    });
    const conn = await connectPinned(
      {
        what: `the device ${entry.name} (through its tunnel)`,
        host: "127.0.0.1",
        port: entry.port,
        username: entry.user,
        pin,
        sock: channel,
        onUnknown: () => undefined,
        onMismatch: (k) => new ExitError(EXIT.hostKey, `the device ${entry.name} shows host key ${k.fingerprint}, not the pinned ${pin}: not touching it`),
        onAuthFailed: () => new ExitError(EXIT.device, `the device ${entry.name} refused ${entry.user}'s login with ${f.identity}`),
      },
      f.creds,
    );
    inner = conn.ssh;
    const device = new Device(conn.ssh, entry.name, "127.0.0.1");
    return {
      device,
      runtime: new DockerRuntime(device),
      dispose() {
        inner?.dispose();
        jump.dispose();
      },
    };
  } catch (e) {
    inner?.dispose();
    jump.dispose();
    throw e;
  }
}

/**
 * The fingerprint the operator's own connection to `device` pins: its pinned host key, or,
 * once this laptop trusts the fleet's host CA for it (node-ssh can't check a host certificate),
 * the key its current host certificate certifies (rtunnel-ca's records).
 */
export async function devicePin(f: Fleet, model: LaptopModel, device: string): Promise<string | undefined> {
  const key = pinnedDeviceKey(model, device);
  if (key) return fingerprintOf(Buffer.from(key.base64, "base64"));
  if (!deviceHostCa(model, device)) return undefined;
  const ca = await loadCa(f.paths.sshDir);
  return ca ? certifiedHostKeyFingerprint(ca, device) : undefined;
}

/** Runs `fn` on each device through its tunnel; a device that can't be reached becomes a warning. */
export async function onDevices(f: Fleet, model: LaptopModel, targets: readonly Pick<DeviceHost, "name" | "port" | "user">[], what: string, fn: (t: TunnelDevice) => Promise<void>): Promise<{ done: string[]; warnings: string[]; failed: { name: string; why: string }[] }> {
  const done: string[] = [];
  const warnings: string[] = [];
  const failed: { name: string; why: string }[] = [];
  for (const e of targets) {
    try {
      const t = await deviceThroughTunnel(f, model, e);
      try {
        await fn(t);
      } finally {
        t.dispose();
      }
      done.push(e.name);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const line = `warning: ${what} on ${e.name} not done: ${why}`;
      warnings.push(line);
      failed.push({ name: e.name, why });
      f.log(line);
    }
  }
  return { done, warnings, failed };
}

/**
 * Closes this laptop's live master connection to the relay (ssh -O exit), if one runs: a
 * grant that changed is then renegotiated by the next ssh, not carried by an old connection.
 */
export async function closeMaster(f: Fleet): Promise<void> {
  if (await closeRelayMaster(f.paths)) f.log("closed this laptop's master connection to the relay (ssh -O exit)");
}
