// Getting the CA's public facts where sshd reads them: the user CA key and the KRL to the
// relay (its admin verbs `set-user-ca` and `set-krl`, issue 15), and the KRL to every
// device (through its tunnel, by enrollment's device code, issue 15), recording in
// devices.json which KRL version each device has, so `status` can list the ones behind and
// the next push picks them up.
import type { DeviceCaRecords } from "../../lib/contract/ca.ts";
import { installKrl } from "../commands/certs.ts";
import type { Fleet } from "../commands/fleet.ts";
import { onDevices, withRelay } from "../commands/fleet.ts";
import type { LaptopModel } from "../laptop/model.ts";
import type { Ca } from "./ca.ts";
import { readDeviceRecords, updateDeviceRecord } from "./records.ts";
import type { Krl } from "./revocation.ts";

/** What the relay took: it has the KRL (and the user CA key) once this is returned; a relay it could not update is an ExitError (exit 4). */
export type RelayPush = { pushed: true };

/** The user CA key and/or the KRL to the relay, over the admin connection (`set-user-ca`, `set-krl`). */
export async function pushToRelay(f: Fleet, what: { ca?: Ca; krl?: Krl }): Promise<RelayPush> {
  return withRelay(f, async (relay) => {
    if (what.ca) await relay.setUserCa([what.ca.userCa]);
    if (what.krl) await relay.setKrl(what.krl.bytes);
    return { pushed: true };
  });
}

/** Pure: the devices whose recorded KRL version is older than `version` (or unknown), by name. */
export function devicesBehind(records: DeviceCaRecords, devices: readonly string[], version: number): string[] {
  return devices.filter((d) => (records[d]?.krlVersion ?? 0) < version).sort();
}

export interface DevicesPush {
  /** devices that now have this version */
  done: string[];
  /** devices that don't, with why (offline, unreachable): the next push picks them up */
  behind: { name: string; why: string }[];
}

/**
 * The KRL to every device of this laptop's model that devices.json says is behind, through its tunnel; devices.json
 * records the version of each one reached (installKrl writes it on one device: the drop-in's
 * transaction, under its sha256 guard). Each device not reached is said once, as it fails.
 */
export async function pushKrlToDevices(f: Fleet, ca: Ca, model: LaptopModel, krl: Krl): Promise<DevicesPush> {
  const targets = [...model.devices.values()];
  const behindNames = new Set(devicesBehind(await readDeviceRecords(ca.paths), targets.map((t) => t.name), krl.version));
  const due = targets.filter((t) => behindNames.has(t.name));
  const r = await onDevices(f, model, due, `installing KRL version ${krl.version}`, async (t) => {
    await installKrl(t, krl);
  });
  for (const name of r.done) await updateDeviceRecord(ca.paths, name, { krlVersion: krl.version, krlAt: new Date().toISOString() });
  return { done: r.done, behind: r.failed };
}
