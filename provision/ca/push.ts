// Getting the CA's public facts where sshd reads them: the user CA key and the KRL to the
// relay (its admin verbs `set-user-ca` and `set-krl`, issue 15 part B), and the KRL to every
// device (through its tunnel, by enrollment's device code, issue 15 part C), recording in
// devices.json which KRL version each device has, so `status` can list the ones behind and
// the next push picks them up.
import type { DeviceCaRecords } from "../../lib/contract/ca.ts";
import type { PublicKey } from "../../lib/keys.ts";
import type { Fleet, TunnelDevice } from "../commands/fleet.ts";
import { onDevices, withRelay } from "../commands/fleet.ts";
import type { DeviceHost, LaptopModel } from "../laptop/model.ts";
import { RelayAdmin } from "../relay/admin.ts";
import type { Ca } from "./ca.ts";
import { updateDeviceRecord } from "./records.ts";
import type { Krl } from "./revocation.ts";

/** The relay's CA verbs, as issue 15 part B adds them to RelayAdmin (design note: "Part B"). */
export interface RelayCaVerbs {
  /** `set-user-ca`: the CA public keys the jump account trusts (none: no certificate is trusted) */
  setUserCa(keys: readonly PublicKey[]): Promise<unknown>;
  /** `set-krl`: the binary KRL (sent base64 on one line) */
  setKrl(krl: Buffer): Promise<unknown>;
}

/**
 * Whether this checkout's RelayAdmin has the CA verbs (checked on the class, before any
 * connection is opened).
 * TODO(issue 15 part B): once RelayAdmin has setUserCa/setKrl, call them directly in
 * pushToRelay and drop this check (a signature that differs from RelayCaVerbs then fails the
 * typecheck there).
 */
export function relayHasCaVerbs(): boolean {
  const proto = RelayAdmin.prototype as unknown as Partial<RelayCaVerbs>;
  return typeof proto.setKrl === "function" && typeof proto.setUserCa === "function";
}

export type RelayPush = { pushed: true } | { pushed: false; why: string };

const NO_RELAY_VERBS = "this checkout's relay client has no set-user-ca/set-krl verbs yet (issue 15 part B)";

/** The user CA key and/or the KRL to the relay, over the admin connection. */
export async function pushToRelay(f: Fleet, what: { ca?: Ca; krl?: Krl }): Promise<RelayPush> {
  if (!relayHasCaVerbs()) return { pushed: false, why: NO_RELAY_VERBS };
  return withRelay(f, async (relay) => {
    const verbs = relay as unknown as RelayCaVerbs;
    if (what.ca) await verbs.setUserCa([what.ca.userCa]);
    if (what.krl) await verbs.setKrl(what.krl.bytes);
    return { pushed: true };
  });
}

/** Pure: the devices whose recorded KRL version is older than `version` (or unknown), by name. */
export function devicesBehind(records: DeviceCaRecords, devices: readonly string[], version: number): string[] {
  return devices.filter((d) => (records[d]?.krlVersion ?? 0) < version).sort();
}

/**
 * How one device gets the KRL (and, on a re-run, the CA key), through its tunnel: issue 15
 * part C's device code, which writes the file under its sha256 guard and validates sshd.
 */
export type DeviceKrlInstaller = (t: TunnelDevice, krl: Krl) => Promise<void>;

export interface DevicesPush {
  /** devices that now have this version */
  done: string[];
  /** devices that don't, with why (offline, unreachable): the next push picks them up */
  behind: { name: string; why: string }[];
}

/**
 * The KRL to every device in `targets` that is behind, through its tunnel; devices.json
 * records the version of each one reached. `install` is part C's device code; without it no
 * device is touched and each one is reported behind.
 */
export async function pushKrlToDevices(f: Fleet, ca: Ca, model: LaptopModel, targets: readonly Pick<DeviceHost, "name" | "port" | "user">[], krl: Krl, records: DeviceCaRecords, install?: DeviceKrlInstaller): Promise<DevicesPush> {
  const behindNames = new Set(devicesBehind(records, targets.map((t) => t.name), krl.version));
  const due = targets.filter((t) => behindNames.has(t.name));
  if (!install) {
    // TODO(issue 15 part C): pass the device KRL installer from provision/device/ here (cli.ts).
    return { done: [], behind: due.map((t) => ({ name: t.name, why: "this checkout has no device KRL install yet (issue 15 part C)" })) };
  }
  const r = await onDevices(f, model, due, `installing KRL version ${krl.version}`, async (t) => {
    await install(t, krl);
  });
  for (const name of r.done) await updateDeviceRecord(ca.paths, name, { krlVersion: krl.version, krlAt: new Date().toISOString() });
  const done = new Set(r.done);
  return {
    done: r.done,
    behind: due.filter((t) => !done.has(t.name)).map((t) => ({ name: t.name, why: r.warnings.find((w) => w.includes(` on ${t.name} `)) ?? "not reached" })),
  };
}
