// Fleet certificates and the devices (issue 15), the effects: what enrollment needs of
// the CA on this machine (provision/ca/) and of the device to give it its certificate files
// (the user CA key, the KRL, the principals, a host certificate), the device's clock, the
// records in rtunnel-ca/devices.json, and the KRL pushed to one device through its tunnel
// (`revoke-cert` calls it for every device; enrollment does it too). The decisions are pure,
// in provision/device/certs.ts; the files go through the drop-in (provision/device/sshd.ts).
import { DEVICE_CA_PATHS, type DeviceCaRecord, type DeviceCaRecords } from "../../lib/contract/ca.ts";
import { keyLine, type PublicKey } from "../../lib/keys.ts";
import { loadCa, inspectCertificate, requireInAgent, signHostKey, type Ca } from "../ca/ca.ts";
import { readDeviceRecords, readIssued, updateDeviceRecord } from "../ca/records.ts";
import { currentKrl, type Krl } from "../ca/revocation.ts";
import { clockOffset, clockProblem, hostCertDecision, type ClockOffset, type HostCertDecision, type HostCertFacts } from "../device/certs.ts";
import { ED25519_HOST_KEY, type Device } from "../device/device.ts";
import { dropInSections, planDropIn, type DeviceCertificates, type FileState, type SshdState } from "../device/sshd.ts";
import { ExitError, EXIT } from "../errors.ts";
import { hostKeyAlias } from "../laptop/model.ts";
import type { TunnelDevice } from "./fleet.ts";

/** The fleet's CA as enrollment and the fleet commands use it: its keys, its current KRL, and what each device was given. */
export interface FleetCa {
  ca: Ca;
  krl: Krl;
  records: DeviceCaRecords;
}

/** The CA under `sshDir` with its KRL and device records, or undefined for a fleet without certificates. */
export async function loadFleetCa(sshDir: string): Promise<FleetCa | undefined> {
  const ca = await loadCa(sshDir);
  if (!ca) return undefined;
  return { ca, krl: await currentKrl(ca), records: await readDeviceRecords(ca.paths) };
}

/**
 * The fingerprint of the host key that `device`'s current host certificate certifies (its
 * serial in devices.json, its key in issued.jsonl): what the operator's own connections (node-ssh,
 * which can't check a host certificate) pin once the laptop trusts the CA instead of a key.
 * `records`: devices.json as the caller already read it.
 */
export async function certifiedHostKeyFingerprint(ca: Ca, device: string, records?: DeviceCaRecords): Promise<string | undefined> {
  const serial = (records ?? (await readDeviceRecords(ca.paths)))[device]?.hostCert?.serial;
  if (!serial) return undefined;
  return (await readIssued(ca.paths)).find((r) => r.type === "host" && r.name === device && r.serial === serial)?.keyFingerprint;
}

/** The device's clock now, against this machine's: the best of three readings (the shortest round trip). */
export async function measureClock(device: Device): Promise<ClockOffset> {
  let best: ClockOffset | undefined;
  for (let i = 0; i < 3; i++) {
    const o = clockOffset(await device.clock());
    if (!best || o.uncertaintySeconds < best.uncertaintySeconds) best = o;
  }
  return best!;
}

/** What enrollment will do about one device's certificates (read-only: nothing is signed yet). */
export interface DeviceCertPlan {
  fleet: FleetCa;
  name: string;
  account: string;
  /** the device's ed25519 host key, when it has one to certify */
  hostKey?: PublicKey;
  /** sign its host key now, or keep the certificate it has; undefined: it gets none (why: `noHostCert`) */
  hostCert?: HostCertDecision;
  noHostCert?: string;
  /** the certificate it has and keeps (when hostCert says not to sign) */
  current?: { text: string; facts: HostCertFacts };
  clock: ClockOffset;
  /** the one line when its clock would refuse certificates */
  clockProblem?: string;
}

/** The certificate the device has (its file, read through the drop-in's state), as ssh-keygen -L reads it. */
async function currentHostCert(owned: ReadonlyMap<string, FileState> | undefined): Promise<DeviceCertPlan["current"]> {
  const text = owned?.get(DEVICE_CA_PATHS.hostCert)?.text?.trim();
  if (!text) return undefined;
  try {
    const info = await inspectCertificate({ text });
    return { text, facts: info };
  } catch {
    return undefined; // not a certificate ssh-keygen reads: signed again
  }
}

/**
 * Read-only: the device's certificate plan for enrollment. Its host key is certified when it
 * has an ed25519 key and that is the key it presents; a new certificate is signed when it has
 * none of ours or less than 30 days are left (the host CA must then be in ssh-agent: checked
 * now, before any change). Its clock is read too.
 */
export async function planDeviceCerts(o: { fleet: FleetCa; device: Device; name: string; account: string; presented: PublicKey; state: SshdState; agentSock?: string; now?: Date }): Promise<DeviceCertPlan> {
  const now = o.now ?? new Date();
  const clock = await measureClock(o.device);
  const problem = clockProblem(clock);
  const base = { fleet: o.fleet, name: o.name, account: o.account, clock, ...(problem ? { clockProblem: problem } : {}) };
  const hostKey = await o.device.ed25519HostKey();
  if (!hostKey) return { ...base, noHostCert: `the device has no ed25519 host key (${ED25519_HOST_KEY}): the laptop keeps its pinned host key` };
  if (o.presented.type === "ssh-ed25519" && o.presented.fingerprint !== hostKey.fingerprint) {
    return { ...base, noHostCert: `the device presents ed25519 host key ${o.presented.fingerprint}, not the one in ${ED25519_HOST_KEY} (${hostKey.fingerprint}): the laptop keeps its pinned host key` };
  }
  const current = await currentHostCert(o.state.owned);
  const decision = hostCertDecision({ current: current?.facts, hostKeyFingerprint: hostKey.fingerprint, hostCaFingerprint: o.fleet.ca.hostCa.fingerprint, alias: hostKeyAlias(o.name), now });
  if (decision.sign) await requireInAgent(o.fleet.ca, "host", o.agentSock ?? process.env.SSH_AUTH_SOCK);
  return { ...base, hostKey, hostCert: decision, ...(current && !decision.sign ? { current } : {}) };
}

/** The files the device gets, with `hostCertificate` (the one it keeps, or the one just signed). */
export function deviceCertificates(p: DeviceCertPlan, hostCertificate: string | undefined): DeviceCertificates {
  return {
    device: p.name,
    userCa: keyLine(p.fleet.ca.userCa, "rtunnel-user-ca"),
    krl: p.fleet.krl.bytes,
    ...(hostCertificate === undefined ? {} : { hostCertificate }),
  };
}

/**
 * The device's certificate files for the plan (before anything is signed: a new host
 * certificate is a placeholder of the right path, so the plan lists it; apply signs it and
 * plans again from the same state).
 */
export function plannedCertificates(p: DeviceCertPlan): DeviceCertificates {
  return deviceCertificates(p, p.hostCert?.sign ? "(a new host certificate, signed when applied)" : p.current?.text);
}

/** The device will have a host certificate of the fleet's CA (the laptop then trusts the CA for its name). */
export const willHaveHostCert = (p: DeviceCertPlan): boolean => p.hostCert !== undefined && (p.hostCert.sign || p.current !== undefined);

/** Signs the device's host key when the plan says so; returns its certificate files and what to record. */
export async function certificatesToInstall(p: DeviceCertPlan, agentSock?: string): Promise<{ certs: DeviceCertificates; hostCert?: NonNullable<DeviceCaRecord["hostCert"]>; signed: boolean }> {
  if (p.hostCert?.sign && p.hostKey) {
    const signed = await signHostKey({ ca: p.fleet.ca, device: p.name, hostKey: p.hostKey, agentSock });
    return { certs: deviceCertificates(p, signed.certificate), hostCert: { serial: signed.record.serial, validAfter: signed.record.validAfter, validBefore: signed.record.validBefore }, signed: true };
  }
  const c = p.current;
  const hostCert = c?.facts.validAfter && c.facts.validBefore ? { serial: c.facts.serial, validAfter: c.facts.validAfter.toISOString(), validBefore: c.facts.validBefore.toISOString() } : undefined;
  return { certs: deviceCertificates(p, c?.text), ...(hostCert ? { hostCert } : {}), signed: false };
}

/** Records in devices.json what the device now has: the KRL version, its host certificate, its clock. */
export async function recordDevice(ca: Ca, name: string, o: { krl: Krl; hostCert?: NonNullable<DeviceCaRecord["hostCert"]>; clock?: ClockOffset; now?: Date }): Promise<void> {
  const at = (o.now ?? new Date()).toISOString();
  await updateDeviceRecord(ca.paths, name, {
    krlVersion: o.krl.version,
    krlAt: at,
    // undefined when it has none any more (its record's old one goes)
    hostCert: o.hostCert,
    ...(o.clock ? { clock: { offsetSeconds: o.clock.offsetSeconds, uncertaintySeconds: o.clock.uncertaintySeconds, measuredAt: at } } : {}),
  });
}

/**
 * The KRL to one device through its tunnel (push.ts's pushKrlToDevices runs it
 * for every device behind): only the KRL file changes, under its sha256 guard, checked with
 * ssh-keygen -Q and sshd -t before the reload, all or nothing. A device enrolled before the
 * fleet had a CA has no certificate section to put it in: one line says to enroll it again.
 */
export async function installKrl(t: TunnelDevice, krl: Krl): Promise<void> {
  const device = t.device;
  const { user } = await device.useRoot();
  const found = await device.sshd(user);
  if (found.kind !== "ok") throw new ExitError(EXIT.device, `the device ${device.name}'s sshd ${found.kind === "absent" ? "is not OpenSSH" : `fails sshd -t (${found.error})`}: its KRL was not installed`);
  const owned = found.state.owned ?? new Map();
  const userCa = owned.get(DEVICE_CA_PATHS.userCa)?.text;
  if (userCa === undefined || !found.state.dropIn.text?.includes(DEVICE_CA_PATHS.krl)) {
    throw new ExitError(EXIT.device, `the device ${device.name} has no fleet certificates yet (enrolled before the CA existed): enroll it again to install them`);
  }
  const certs: DeviceCertificates = { device: device.name, userCa, krl: krl.bytes, ...(owned.get(DEVICE_CA_PATHS.hostCert)?.text ? { hostCertificate: owned.get(DEVICE_CA_PATHS.hostCert)!.text! } : {}) };
  const plan = planDropIn(found.state, user, dropInSections(certs, user));
  if (plan.conflicts.length) throw new ExitError(EXIT.device, `the device ${device.name}: ${plan.conflicts[0]}`);
  const other = plan.writes.filter((w) => w.path !== DEVICE_CA_PATHS.krl);
  if (other.length) {
    // Anything else differing (the drop-in edited, the CA key changed) is enrollment's to redo, with its plan shown.
    throw new ExitError(EXIT.device, `the device ${device.name}'s sshd setup differs from what enrollment wrote (${other.map((w) => w.path).join(", ")}): enroll it again`);
  }
  // Only the KRL is checked: a revocation must reach a device whose host certificate went stale
  // (its host key changed since enrollment), which the full plan's check would refuse.
  if (plan.writes.length) await device.changeSshd({ ...plan, verify: plan.verify?.filter((v) => v.kind === "krl") });
}
