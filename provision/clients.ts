// `add-client` and `remove-client`: another laptop's access. The relay grants its key
// `-W` to the chosen devices' ports (add-client sets the grant list exactly: it replaces the
// earlier one); its key is also added to (or removed from) each granted device account's
// authorized_keys, through the tunnel, best effort with a warning per device that can't be
// reached; narrowing the list takes the key off the devices that were dropped, the same way.
// add-client then writes that laptop's ~/.ssh (--out DIR, checked writable before any change)
// or prints it.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ExitError, EXIT } from "./errors.ts";
import { deviceThroughTunnel, laptopDevices, openFleet, withRelay, type Fleet, type FleetOptions } from "./fleet.ts";
import { atomicWrite, checkWritable } from "./laptop.ts";
import { sh } from "./proc.ts";
import { unconfirmedCutWarning, type RelayEntry } from "./relay.ts";
import { keyHeldElsewhere } from "./registry.ts";
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
  /** devices dropped from its earlier list whose accounts no longer accept the key */
  deauthorizedOn: string[];
  warnings: string[];
  /** that laptop's files, relative to its ~/.ssh */
  files: Record<string, string>;
  written: string[];
}

/** That laptop's files, relative to its ~/.ssh (the keys of renderClientFiles). */
export const CLIENT_FILES = ["config.d/rtunnel", "known_hosts.rtunnel", "config"] as const;

/** Pure: the devices of an earlier grant that a new one drops. */
export function droppedDevices(before: readonly string[], after: readonly string[]): string[] {
  return before.filter((d) => !after.includes(d)).sort();
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
  return parsePublicKey(text.trim(), `--key ${file}`);
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
  const name = validateName(o.name, "client name");
  const wanted = o.devices === "all" ? "all" : [...new Set(o.devices.map((d) => validateName(d, "each device in --devices")))].sort();
  if (wanted !== "all" && wanted.length === 0) throw new ExitError(EXIT.usage, "--devices needs at least one device name (or pass --all)");
  const key = await readKey(o.key);
  const f = await openFleet(o);
  const outFiles = o.out ? CLIENT_FILES.map((rel) => ({ rel, file: path.join(path.resolve(o.out!), rel) })) : [];
  // Before any change: --out must be a place the files can be written to.
  for (const { file } of outFiles) await checkWritable(file);
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
    const other = keyHeldElsewhere(registry, key.fingerprint, name);
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
    const files = renderClientFiles({ relay: { host: f.facts.host, port: f.facts.port, hostKey: f.facts.hostKey }, devices: entries, hostKeys });
    // Devices its earlier grant had and this one drops: the key comes off their accounts too.
    const before = existing ? (existing.all ? registry.filter((e) => e.kind === "device").map((e) => e.name) : (existing.devices ?? [])) : [];
    const dropped = droppedDevices(before, devices);

    // Changes begin: the relay, then the devices' accounts, then the files.
    f.log(`relay: client ${name} (${key.fingerprint}) → ${wanted === "all" ? "every device" : devices.join(",")}`);
    if (wanted === "all") await relay.call(["add-client", name, "--all"], `${key.type} ${key.base64}\n`);
    else await relay.addClient(name, `${key.type} ${key.base64}`, devices);
    let authorizedOn: string[] = [];
    let deauthorizedOn: string[] = [];
    const warnings: string[] = [];
    if (!o.skipDeviceKeys) {
      const added = await onDevices(f, entries, `authorizing ${name}'s key`, async (d) => {
        await d.authorize(key, `rtunnel-${name}`);
      });
      authorizedOn = added.done;
      warnings.push(...added.warnings);
      const reachable: DeviceEntry[] = [];
      for (const d of dropped) {
        const local = mine.find((m) => m.name === d);
        if (local) reachable.push({ ...local, port: byName.get(d)?.port ?? local.port });
        else {
          const line = `warning: taking ${name}'s key off ${d} not done: this laptop has no Host block for it; remove the line ending rtunnel-${name} from its authorized_keys by hand`;
          warnings.push(line);
          f.log(line);
        }
      }
      const removed = await onDevices(f, reachable, `taking ${name}'s key off`, async (d) => {
        await deauthorize(d, key);
      });
      deauthorizedOn = removed.done;
      warnings.push(...removed.warnings);
    }
    const written: string[] = [];
    for (const { rel, file } of outFiles) {
      await atomicWrite(file, files[rel]!);
      written.push(file);
    }
    return { name, fingerprint: key.fingerprint, devices, authorizedOn, deauthorizedOn, warnings, files, written };
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

/**
 * The script that takes one key out of the account's authorized_keys. A failed grep (exit 2:
 * a full SD card, an I/O error) stops it with the file untouched; the new text goes to a temp
 * file beside it with the same mode and owner (`cp -p`), then replaces it with one rename, so
 * the file is never empty or half-written. A symlinked file is written through to its target.
 */
export function deauthorizeScript(key: PublicKey): string {
  return [
    "set -e",
    'f="$HOME/.ssh/authorized_keys"',
    '[ -f "$f" ] || exit 0',
    'f=$(readlink -f "$f")',
    'tmp="$f.rtunnel-tmp.$$"',
    "trap 'rm -f \"$tmp\"' EXIT",
    'cp -p "$f" "$tmp"',
    "rc=0",
    `grep -vF -- ${sh(` ${key.base64}`)} "$f" > "$tmp" || rc=$?`,
    // grep: 0 lines kept, 1 nothing kept (the key was the only line), >1 an error.
    'if [ "$rc" -gt 1 ]; then echo "grep failed (exit $rc): $f left as it was" >&2; exit 1; fi',
    'mv -f "$tmp" "$f"',
  ].join("\n");
}

/** Takes one key out of the device account's authorized_keys (atomically; see deauthorizeScript). */
export async function deauthorize(device: { run: (cmd: string) => Promise<unknown> }, key: PublicKey): Promise<void> {
  await device.run(`sh -c ${sh(deauthorizeScript(key))}`);
}

export async function removeClient(o: RemoveClientOptions): Promise<RemoveClientResult> {
  const name = validateName(o.name, "client name");
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
    const cut = unconfirmedCutWarning(name, await relay.remove(name));
    if (cut) f.log(cut);
    let deauthorizedOn: string[] = [];
    let warnings: string[] = cut ? [cut] : [];
    if (!o.skipDeviceKeys) {
      const entries = mine.filter((m) => granted.includes(m.name));
      const off = await onDevices(f, entries, `removing ${name}'s key`, async (d) => {
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
      });
      deauthorizedOn = off.done;
      warnings = [...warnings, ...off.warnings];
    }
    return { removed: name, fingerprint: entry.fingerprint, deauthorizedOn, warnings };
  });
}
