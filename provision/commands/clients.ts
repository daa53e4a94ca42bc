// `add-client` and `remove-client`: another laptop's access. The relay grants its key `-W`
// to the chosen devices' ports (add-client sets the grant exactly: it replaces the earlier
// one); its key is also added to (or removed from) each granted device account's
// authorized_keys, through the tunnel, best effort with a warning per device that can't be
// reached; narrowing the grant takes the key off the devices that were dropped, the same
// way. add-client then writes that laptop's ~/.ssh (--out DIR, checked writable before any
// change) or prints it.
import path from "node:path";
import { ExitError, EXIT } from "../errors.ts";
import { atomicWrite, checkWritable, readPublicKeyFile } from "../laptop/files.ts";
import { deviceHostCa, LAPTOP_FILES, pinnedDeviceKey, renderLaptopFiles, type DeviceHost } from "../laptop/model.ts";
import { unconfirmedCutWarning } from "../relay/admin.ts";
import type { DeviceListing, Grant } from "../relay/protocol.ts";
import { keyHeldElsewhere } from "../relay/registry.ts";
import { validateName } from "../validate.ts";
import { closeMaster, onDevices, openFleet, readLaptopSide, withRelay, type FleetOptions } from "./fleet.ts";

export interface AddClientOptions extends FleetOptions {
  name: string;
  /** the laptop's public key file (its .pub) */
  key: string;
  /** device names, or "all" */
  devices: string[] | "all";
  /** write that laptop's ssh directory here (config, config.d/rtunnel, known_hosts.rtunnel) */
  out?: string;
  /** that laptop runs Windows' OpenSSH (no ControlMaster): render its relay hop without multiplexing */
  windows?: boolean;
  /** don't touch the devices' authorized_keys */
  skipDeviceKeys?: boolean;
}

export interface AddClientResult {
  name: string;
  fingerprint: string;
  devices: string[];
  /** device accounts that now accept the key */
  authorizedOn: string[];
  /** devices dropped from its earlier grant whose accounts no longer accept the key */
  deauthorizedOn: string[];
  warnings: string[];
  /** what that laptop's files were rendered for */
  renderedFor: "macOS/Linux" | "Windows";
  /** that laptop's files, relative to its ~/.ssh */
  files: Record<string, string>;
  written: string[];
}

/** Pure: the devices of an earlier grant that a new one drops. */
export function droppedDevices(before: readonly string[], after: readonly string[]): string[] {
  return before.filter((d) => !after.includes(d)).sort();
}

export async function addClient(o: AddClientOptions): Promise<AddClientResult> {
  const name = validateName(o.name, "client name");
  const wanted: Grant = o.devices === "all" ? "all" : [...new Set(o.devices.map((d) => validateName(d, "each device in --devices")))].sort();
  if (wanted !== "all" && wanted.length === 0) throw new ExitError(EXIT.usage, "--devices needs at least one device name (or pass --all)");
  const key = await readPublicKeyFile(o.key, "--key", "the laptop's public key file");
  const f = await openFleet(o);
  const outFiles = o.out ? LAPTOP_FILES.map((rel) => ({ rel, file: path.join(path.resolve(o.out!), rel) })) : [];
  // Before any change: --out must be a place the files can be written to.
  for (const { file } of outFiles) await checkWritable(file);
  const { model } = await readLaptopSide(f);

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
    const onRelay = registry.filter((e): e is DeviceListing => e.kind === "device");
    const devices = wanted === "all" ? onRelay.map((e) => e.name).sort() : [...wanted];
    const missing = devices.filter((d) => byName.get(d)?.kind !== "device");
    if (missing.length) throw new ExitError(EXIT.usage, `no such device on the relay: ${missing.join(", ")} (see \`status\`)`);
    // The other laptop's files need each device's user and pinned host key (or, for a device
    // with a host certificate, the host CA this laptop trusts for it), from this laptop.
    const targets = devices.map((d) => {
      const local = model.devices.get(d);
      const hostKey = pinnedDeviceKey(model, d);
      const hostCa = deviceHostCa(model, d);
      if (!local || (!hostKey && !hostCa)) throw new ExitError(EXIT.usage, `this laptop has no Host block or pinned host key for ${d} (${f.paths.fragment}): run add-client from the laptop that enrolled it`);
      return { name: d, user: local.user, port: onRelay.find((e) => e.name === d)?.port ?? local.port, ...(hostKey ? { hostKey } : { hostCa: hostCa! }) };
    });
    const windows = o.windows ?? false;
    const files = renderLaptopFiles({ relay: f.facts, devices: targets, multiplex: !windows });
    // Devices its earlier grant had and this one drops: the key comes off their accounts too.
    const before = existing ? (existing.all ? onRelay.map((e) => e.name) : existing.devices) : [];
    const dropped = droppedDevices(before, devices);

    // Changes begin: the relay, then the devices' accounts, then the files.
    f.log(`relay: client ${name} (${key.fingerprint}) → ${wanted === "all" ? "every device" : devices.join(",")}`);
    await relay.addClient(name, key, wanted);
    let authorizedOn: string[] = [];
    let deauthorizedOn: string[] = [];
    const warnings: string[] = [];
    if (!o.skipDeviceKeys) {
      const added = await onDevices(f, model, targets, `authorizing ${name}'s key`, async (t) => {
        await t.device.authorize(key, `rtunnel-${name}`);
      });
      authorizedOn = added.done;
      warnings.push(...added.warnings);
      const reachable: Omit<DeviceHost, "extra">[] = [];
      for (const d of dropped) {
        const local = model.devices.get(d);
        if (local) reachable.push({ ...local, port: onRelay.find((e) => e.name === d)?.port ?? local.port });
        else {
          const line = `warning: taking ${name}'s key off ${d} not done: this laptop has no Host block for it; remove the line ending rtunnel-${name} from its authorized_keys by hand`;
          warnings.push(line);
          f.log(line);
        }
      }
      const removed = await onDevices(f, model, reachable, `taking ${name}'s key off`, async (t) => {
        await t.device.deauthorize(key);
      });
      deauthorizedOn = removed.done;
      warnings.push(...removed.warnings);
    }
    const written: string[] = [];
    for (const { rel, file } of outFiles) {
      await atomicWrite(file, files[rel]);
      written.push(file);
    }
    return { name, fingerprint: key.fingerprint, devices, authorizedOn, deauthorizedOn, warnings, renderedFor: windows ? "Windows" : "macOS/Linux", files, written };
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

export async function removeClient(o: RemoveClientOptions): Promise<RemoveClientResult> {
  const name = validateName(o.name, "client name");
  const f = await openFleet(o);
  const { model } = await readLaptopSide(f);
  const result = await withRelay(f, async (relay) => {
    const entry = (await relay.list()).find((e) => e.name === name);
    if (!entry) throw new ExitError(EXIT.usage, `no client named ${name} on the relay (see \`status\`)`);
    if (entry.kind !== "client") throw new ExitError(EXIT.usage, `${name} is a device: use revoke-device ${name}`);
    f.log(`relay: removing client ${name} (${entry.fingerprint}); its live sessions end now`);
    const cut = unconfirmedCutWarning(name, await relay.remove(name));
    if (cut) f.log(cut);
    let deauthorizedOn: string[] = [];
    let warnings: string[] = cut ? [cut] : [];
    if (!o.skipDeviceKeys) {
      // The relay keeps only the key's fingerprint: each device's authorized_keys is searched for it.
      const targets = [...model.devices.values()].filter((d) => entry.all || entry.devices.includes(d.name));
      const off = await onDevices(f, model, targets, `removing ${name}'s key`, async (t) => {
        for (const k of await t.device.authorizedKeys()) if (k.fingerprint === entry.fingerprint) await t.device.deauthorize(k);
      });
      deauthorizedOn = off.done;
      warnings = [...warnings, ...off.warnings];
    }
    return { removed: name, fingerprint: entry.fingerprint, deauthorizedOn, warnings };
  });
  await closeMaster(f);
  return result;
}
