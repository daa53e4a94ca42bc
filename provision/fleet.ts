// What the fleet commands share: the relay facts, this laptop's paths and key, the admin
// connection, and a connection to a device's own sshd THROUGH its tunnel (jump@relay, then
// 127.0.0.1:PORT), so an operator manages the fleet from anywhere, not only from the LAN.
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { NodeSSH } from "node-ssh";
import { Device } from "./device.ts";
import { ExitError, EXIT } from "./errors.ts";
import { laptopPaths, pinnedDeviceKey, type LaptopPaths } from "./laptop.ts";
import { connectRelay, RelayAdmin } from "./relay.ts";
import { loadRelayFacts, type RelayFacts } from "./relayFacts.ts";
import { connectPinned, type Credentials } from "./ssh.ts";
import { JUMP_USER, parseDevices, type DeviceEntry } from "./sshConfig.ts";

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

export async function openFleet(o: FleetOptions): Promise<Fleet> {
  const facts = o.relay ?? (await loadRelayFacts(o.relayFile, o.cwd));
  const paths = laptopPaths({ home: o.home, sshDir: o.sshDir });
  const identity = path.resolve(o.identity ?? path.join(paths.sshDir, "id_ed25519"));
  return { facts, paths, identity, creds: { identityFile: identity, agent: o.agent ?? process.env.SSH_AUTH_SOCK }, log: o.log ?? (() => {}) };
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

/** The devices this laptop's ssh_config knows (port, user), by name. */
export async function laptopDevices(p: LaptopPaths): Promise<DeviceEntry[]> {
  const text = await readFile(p.fragment, "utf8").catch(() => "");
  return parseDevices(text);
}

export interface TunnelDevice {
  device: Device;
  dispose(): void;
}

/**
 * The device's own sshd through its tunnel: jump@relay (this laptop's client key), a
 * direct-tcpip channel to 127.0.0.1:PORT, then ssh over that channel with the device's host
 * key pinned to known_hosts.rtunnel. Throws ExitError(device) when any hop fails.
 */
export async function deviceThroughTunnel(f: Fleet, entry: DeviceEntry): Promise<TunnelDevice> {
  const pin = await pinnedDeviceKey(f.paths, entry.name);
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
