// The laptop side on disk: ~/.ssh/config.d/rtunnel, ~/.ssh/known_hosts.rtunnel and the one
// Include line in ~/.ssh/config. Paths through node:path and os.homedir(); no shell-outs, so
// the same code serves Windows' and macOS' OpenSSH. Every text is computed before the first
// write, each file is replaced atomically (temp file + rename), and ~/.ssh/config is copied to
// config.rtunnel-backup before the first change we make to it.
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  ensureInclude,
  hostKeyAlias,
  knownHostsPattern,
  parseDevices,
  parseKnownHosts,
  renderConfig,
  renderKnownHosts,
  upsertDevice,
  upsertKnownHost,
  type DeviceEntry,
} from "./sshConfig.ts";
import { configPath, fingerprintOf, type PublicKey } from "./validate.ts";

export interface LaptopPaths {
  home: string;
  sshDir: string;
  /** ~/.ssh/config */
  config: string;
  backup: string;
  /** ~/.ssh/config.d/rtunnel */
  fragment: string;
  knownHosts: string;
  windows: boolean;
}

export function laptopPaths(o: { home?: string; sshDir?: string; windows?: boolean } = {}): LaptopPaths {
  const home = o.home ?? os.homedir();
  const sshDir = path.resolve(o.sshDir ?? path.join(home, ".ssh"));
  return {
    home,
    sshDir,
    config: path.join(sshDir, "config"),
    backup: path.join(sshDir, "config.rtunnel-backup"),
    fragment: path.join(sshDir, "config.d", "rtunnel"),
    knownHosts: path.join(sshDir, "known_hosts.rtunnel"),
    windows: o.windows ?? process.platform === "win32",
  };
}

/** How these paths are spelled inside ssh_config; throws InputError when one can't be. */
export function configPaths(p: LaptopPaths, identityFile: string) {
  const cp = (abs: string) => configPath(abs, p.home, p.windows);
  return { fragment: cp(p.fragment), knownHosts: cp(p.knownHosts), identity: cp(path.resolve(identityFile)) };
}

const readOrUndefined = (file: string) => readFile(file, "utf8").catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));

export async function atomicWrite(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${randomBytes(4).toString("hex")}`;
  try {
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

export interface LaptopChange {
  relay: { host: string; port: number; hostKey: PublicKey };
  device: DeviceEntry & { hostKey: PublicKey };
  identityFile: string;
}

export interface PlannedWrite {
  file: string;
  text: string;
}

/** Pure with respect to the disk's future: reads the current files, returns what would change. */
export async function planLaptop(p: LaptopPaths, c: LaptopChange): Promise<{ writes: PlannedWrite[]; backup: boolean }> {
  const paths = configPaths(p, c.identityFile);
  const [fragment, known, config, backup] = await Promise.all([readOrUndefined(p.fragment), readOrUndefined(p.knownHosts), readOrUndefined(p.config), readOrUndefined(p.backup)]);
  const devices = upsertDevice(parseDevices(fragment ?? ""), { name: c.device.name, port: c.device.port, user: c.device.user });
  const fragmentText = renderConfig({
    relay: { host: c.relay.host, port: c.relay.port },
    identityFile: paths.identity,
    knownHostsFile: paths.knownHosts,
    devices,
  });
  let entries = parseKnownHosts(known ?? "");
  entries = upsertKnownHost(entries, { pattern: knownHostsPattern(c.relay.host, c.relay.port), type: c.relay.hostKey.type, base64: c.relay.hostKey.base64 });
  entries = upsertKnownHost(entries, { pattern: hostKeyAlias(c.device.name), type: c.device.hostKey.type, base64: c.device.hostKey.base64 });
  const knownText = renderKnownHosts(entries);
  const include = ensureInclude(config, paths.fragment);
  const writes: PlannedWrite[] = [];
  if (fragmentText !== fragment) writes.push({ file: p.fragment, text: fragmentText });
  if (knownText !== known) writes.push({ file: p.knownHosts, text: knownText });
  if (include.changed) writes.push({ file: p.config, text: include.text });
  return { writes, backup: include.changed && config !== undefined && backup === undefined };
}

export async function applyLaptop(p: LaptopPaths, plan: { writes: PlannedWrite[]; backup: boolean }): Promise<string[]> {
  await mkdir(p.sshDir, { recursive: true, mode: 0o700 });
  if (plan.backup) await copyFile(p.config, p.backup);
  // The Include goes last: until the fragment exists, ~/.ssh/config must not point at it.
  const ordered = [...plan.writes.filter((w) => w.file !== p.config), ...plan.writes.filter((w) => w.file === p.config)];
  for (const w of ordered) await atomicWrite(w.file, w.text);
  return [...(plan.backup ? [p.backup] : []), ...ordered.map((w) => w.file)];
}

/** The host keys pinned by an earlier enrollment, read from known_hosts.rtunnel. */
export async function pinnedDeviceKey(p: LaptopPaths, device: string): Promise<string | undefined> {
  const known = parseKnownHosts((await readOrUndefined(p.knownHosts)) ?? "");
  const e = known.find((k) => k.pattern === hostKeyAlias(device));
  if (!e) return undefined;
  return fingerprintOf(Buffer.from(e.base64, "base64"));
}
