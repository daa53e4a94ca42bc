// `add-client` and `remove-client`: another laptop's access. The relay grants its key
// `-W` to the chosen devices' ports (add-client sets the grant list exactly: it replaces the
// earlier one); its key is also added to (or removed from) each granted device account's
// authorized_keys, through the tunnel, best effort with a warning per device that can't be
// reached. add-client then writes that laptop's ~/.ssh (--out DIR) or prints it.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ExitError, EXIT } from "./errors.ts";
import { checked, deviceThroughTunnel, laptopDevices, openFleet, withRelay, type Fleet, type FleetOptions } from "./fleet.ts";
import { atomicWrite, laptopPaths } from "./laptop.ts";
import { sh } from "./proc.ts";
import type { RelayEntry } from "./relay.ts";
import {
  ensureInclude,
  hostKeyAlias,
  knownHostsPattern,
  parseKnownHosts,
  renderConfig,
  renderKnownHosts,
  type DeviceEntry,
  type KnownHost,
} from "./sshConfig.ts";
import { parsePublicKey, validateName, type PublicKey } from "./validate.ts";

export interface AddClientOptions extends FleetOptions {
  name: string;
  /** the laptop's public key file (its .pub) */
  key: string;
  /** device names, or "all" */
  devices: string[] | "all";
  /** write that laptop's ssh directory here (config, config.d/rtunnel, known_hosts.rtunnel) */
  out?: string;
  /** don't touch the devices' authorized_keys */
  skipDeviceKeys?: boolean;
}

export interface AddClientResult {
  name: string;
  fingerprint: string;
  devices: string[];
  /** device accounts that now accept the key; and those that could not be reached */
  authorizedOn: string[];
  warnings: string[];
  /** that laptop's files, relative to its ~/.ssh */
  files: Record<string, string>;
  written: string[];
}

/** Pure: that laptop's three files (its own ~/.ssh, paths spelled with ~/). */
export function renderClientFiles(o: { relay: { host: string; port: number; hostKey: PublicKey }; devices: DeviceEntry[]; hostKeys: KnownHost[] }): Record<string, string> {
  const fragment = renderConfig({ relay: o.relay, identityFile: "~/.ssh/id_ed25519", knownHostsFile: "~/.ssh/known_hosts.rtunnel", devices: o.devices });
  const known = renderKnownHosts([{ pattern: knownHostsPattern(o.relay.host, o.relay.port), type: o.relay.hostKey.type, base64: o.relay.hostKey.base64 }, ...o.hostKeys]);
  return { "config.d/rtunnel": fragment, "known_hosts.rtunnel": known, config: ensureInclude(undefined, "~/.ssh/config.d/rtunnel").text };
}

async function readKey(file: string): Promise<PublicKey> {
  const text = await readFile(file, "utf8").catch(() => {
    throw new ExitError(EXIT.usage, `can't read --key ${file}: pass the laptop's public key file (id_ed25519.pub)`);
  });
  if (/PRIVATE KEY/.test(text)) throw new ExitError(EXIT.usage, `--key ${file} is a PRIVATE key: pass the .pub file, and never copy the private half anywhere`);
  return checked(() => parsePublicKey(text.trim(), `--key ${file}`));
}

/** Runs `fn` on each device through its tunnel; a device that can't be reached becomes a warning. */
async function onDevices(f: Fleet, entries: DeviceEntry[], what: string, fn: (d: Awaited<ReturnType<typeof deviceThroughTunnel>>["device"]) => Promise<void>) {
  const done: string[] = [];
  const warnings: string[] = [];
  for (const e of entries) {
    try {
      const t = await deviceThroughTunnel(f, e);
      try {
        await fn(t.device);
      } finally {
        t.dispose();
      }
      done.push(e.name);
    } catch (err) {
      const line = `warning: ${what} on ${e.name} not done: ${err instanceof Error ? err.message : String(err)}`;
      warnings.push(line);
      f.log(line);
    }
  }
  return { done, warnings };
}

export async function addClient(o: AddClientOptions): Promise<AddClientResult> {
  const name = checked(() => validateName(o.name, "client name"));
  const wanted = o.devices === "all" ? "all" : [...new Set(o.devices.map((d) => checked(() => validateName(d, "each device in --devices"))))].sort();
  if (wanted !== "all" && wanted.length === 0) throw new ExitError(EXIT.usage, "--devices needs at least one device name (or pass --all)");
  const key = await readKey(o.key);
  const f = await openFleet(o);
  const outPaths = o.out ? laptopPaths({ sshDir: o.out, home: path.resolve(o.out) }) : undefined;
  const mine = await laptopDevices(f.paths);
  const pinned = parseKnownHosts(await readFile(f.paths.knownHosts, "utf8").catch(() => ""));

  return withRelay(f, async (relay) => {
    const registry = await relay.list();
    const byName = new Map(registry.map((e) => [e.name, e]));
    const existing = byName.get(name);
    if (existing && existing.kind !== "client") throw new ExitError(EXIT.relay, `${name} is a device on the relay: choose another client name`);
    if (existing && existing.fingerprint !== key.fingerprint) {
      throw new ExitError(EXIT.relay, `client ${name} exists with another key (${existing.fingerprint}): remove-client ${name} first, or choose another name`);
    }
    const other = registry.find((e) => e.fingerprint === key.fingerprint && e.name !== name);
    if (other) throw new ExitError(EXIT.relay, `this key is already registered as ${other.kind} ${other.name}: every laptop needs its own key`);
    const devices = wanted === "all" ? registry.filter((e) => e.kind === "device").map((e) => e.name).sort() : wanted;
    const missing = devices.filter((d) => byName.get(d)?.kind !== "device");
    if (missing.length) throw new ExitError(EXIT.usage, `no such device on the relay: ${missing.join(", ")} (see \`status\`)`);
    // The other laptop's files need each device's user and pinned host key, from this laptop.
    const entries: DeviceEntry[] = [];
    const hostKeys: KnownHost[] = [];
    for (const d of devices) {
      const local = mine.find((m) => m.name === d);
      const hk = pinned.find((k) => k.pattern === hostKeyAlias(d));
      if (!local || !hk) throw new ExitError(EXIT.usage, `this laptop has no Host block or pinned host key for ${d} (${f.paths.fragment}): run add-client from the laptop that enrolled it`);
      entries.push({ ...local, port: (byName.get(d) as RelayEntry).port ?? local.port });
      hostKeys.push(hk);
    }
    const files = checked(() => renderClientFiles({ relay: { host: f.facts.host, port: f.facts.port, hostKey: f.facts.hostKey }, devices: entries, hostKeys }));

    // Changes begin: the relay, then the devices' accounts, then the files.
    f.log(`relay: client ${name} (${key.fingerprint}) → ${wanted === "all" ? "every device" : devices.join(",")}`);
    if (wanted === "all") await relay.call(["add-client", name, "--all"], `${key.type} ${key.base64}\n`);
    else await relay.addClient(name, `${key.type} ${key.base64}`, devices);
    let authorizedOn: string[] = [];
    let warnings: string[] = [];
    if (!o.skipDeviceKeys) {
      ({ done: authorizedOn, warnings } = await onDevices(f, entries, `authorizing ${name}'s key`, async (d) => {
        await d.authorize(key, `rtunnel-${name}`);
      }));
    }
    const written: string[] = [];
    if (outPaths) {
      for (const [rel, text] of Object.entries(files)) {
        const file = path.join(outPaths.sshDir, rel);
        await atomicWrite(file, text);
        written.push(file);
      }
    }
    return { name, fingerprint: key.fingerprint, devices, authorizedOn, warnings, files, written };
  });
}

export interface RemoveClientOptions extends FleetOptions {
  name: string;
  skipDeviceKeys?: boolean;
}

export interface RemoveClientResult {
  removed: string;
  fingerprint: string;
  /** device accounts its key was taken out of; warnings for those not reached */
  deauthorizedOn: string[];
  warnings: string[];
}

/** Takes one key out of the device account's authorized_keys (kept in place: same inode, same mode). */
export async function deauthorize(device: { run: (cmd: string) => Promise<unknown> }, key: PublicKey): Promise<void> {
  const script = [
    "set -e",
    'f="$HOME/.ssh/authorized_keys"',
    '[ -f "$f" ] || exit 0',
    `grep -vF -- ${sh(` ${key.base64}`)} "$f" > "$f.rtunnel-tmp" || true`,
    'cat "$f.rtunnel-tmp" > "$f"',
    'rm -f "$f.rtunnel-tmp"',
  ].join("\n");
  await device.run(`sh -c ${sh(script)}`);
}

export async function removeClient(o: RemoveClientOptions): Promise<RemoveClientResult> {
  const name = checked(() => validateName(o.name, "client name"));
  const f = await openFleet(o);
  const mine = await laptopDevices(f.paths);
  return withRelay(f, async (relay) => {
    const registry = await relay.list();
    const entry = registry.find((e) => e.name === name);
    if (!entry) throw new ExitError(EXIT.usage, `no client named ${name} on the relay (see \`status\`)`);
    if (entry.kind !== "client") throw new ExitError(EXIT.usage, `${name} is a device: use revoke-device ${name}`);
    const granted = entry.devices ?? [];
    // The key's line, to find it in the devices' authorized_keys: the relay keeps only the fingerprint
    // in `list`, so the devices are searched for a line whose key has that fingerprint.
    f.log(`relay: removing client ${name} (${entry.fingerprint}); its live sessions end now`);
    await relay.remove(name);
    let deauthorizedOn: string[] = [];
    let warnings: string[] = [];
    if (!o.skipDeviceKeys) {
      const entries = mine.filter((m) => granted.includes(m.name));
      ({ done: deauthorizedOn, warnings } = await onDevices(f, entries, `removing ${name}'s key`, async (d) => {
        const lines = (await d.run('cat "$HOME/.ssh/authorized_keys" 2>/dev/null || true')).stdout.split("\n");
        for (const line of lines) {
          const m = /(?:^|\s)([a-z0-9@.-]+) ([A-Za-z0-9+/]+={0,2})(?:\s|$)/.exec(line);
          if (!m) continue;
          try {
            const k = parsePublicKey(`${m[1]} ${m[2]}`);
            if (k.fingerprint === entry.fingerprint) await deauthorize(d, k);
          } catch {
            // not a key line we can read: left alone
          }
        }
      }));
    }
    return { removed: name, fingerprint: entry.fingerprint, deauthorizedOn, warnings };
  });
}
