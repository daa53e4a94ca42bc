// Fleet certificates and one device (issue 15), the decisions without the effects: how far
// the device's clock is from this machine's and what that does to certificates; whether the
// host certificate a device has is still the right one or must be signed again; and where a
// device stands for `status` (days left on its host certificate, the KRL version it has).
// Pure: enrollment (provision/commands/enroll.ts) and the fleet commands
// (provision/commands/certs.ts) bring the facts.
import { BACKDATE_SECONDS, HOST_CERT_LIFETIME, hostCertState, type DeviceCaRecord } from "../../lib/contract/ca.ts";

// --- the device's clock ------------------------------------------------------------------------

export interface ClockReading {
  /** this machine's clock (ms) just before the device was asked */
  sentMs: number;
  /** the device's `date +%s` */
  deviceSeconds: number;
  /** this machine's clock (ms) when the answer came back */
  receivedMs: number;
}

export interface ClockOffset {
  /** device minus this machine, in seconds (positive: the device is ahead) */
  offsetSeconds: number;
  /** how far off that can be: half the round trip, plus the second `date +%s` truncates */
  uncertaintySeconds: number;
}

/**
 * The device's clock against this one: its answer is taken as read halfway through the round
 * trip. `date +%s` truncates, so the device's time lies in [s, s+1): its middle is s + 0.5.
 */
export function clockOffset(r: ClockReading): ClockOffset {
  if (!Number.isFinite(r.deviceSeconds) || !(r.receivedMs >= r.sentMs)) throw new RangeError(`not a clock reading: ${JSON.stringify(r)}`);
  const midMs = (r.sentMs + r.receivedMs) / 2;
  const offset = r.deviceSeconds + 0.5 - midMs / 1000;
  // The uncertainty is rounded up, so it stays a bound: rounded to nearest, a reading taken
  // at the very end of the round trip, at the start of the device's second, fell outside it.
  const bound = (r.receivedMs - r.sentMs) / 2000 + 0.5;
  return { offsetSeconds: Math.round(offset * 10) / 10, uncertaintySeconds: Math.ceil(bound * 10 - 1e-9) / 10 };
}

/** `date +%s` output: whole seconds since the epoch, or undefined. */
export function parseEpochSeconds(text: string): number | undefined {
  const t = text.trim();
  return /^[0-9]{1,12}$/.test(t) ? Number(t) : undefined;
}

/**
 * The one line for a device whose clock would refuse certificates, or undefined. Behind by
 * more than the backdating: a certificate issued now is not yet valid there. Ahead by more
 * than that: each certificate ends early there, and the shortest ones (5 minutes) are over
 * before they begin. Decided on the measured offset less its uncertainty, so a slow link does
 * not make a good clock look wrong.
 */
export function clockProblem(o: ClockOffset): string | undefined {
  const beyond = Math.abs(o.offsetSeconds) - o.uncertaintySeconds;
  if (beyond <= BACKDATE_SECONDS) return undefined;
  const n = Math.round(Math.abs(o.offsetSeconds));
  return o.offsetSeconds < 0
    ? `the device's clock is ${n} s behind: certificates issued now are not yet valid there; fix its clock (timedatectl / NTP)`
    : `the device's clock is ${n} s ahead: certificates expire ${n} s early there (one shorter than that is never valid); fix its clock (timedatectl / NTP)`;
}

/** The progress line: the offset, and the problem when there is one. */
export function describeClock(o: ClockOffset): string {
  const n = Math.abs(o.offsetSeconds);
  const where = n < 0.05 ? "in step with this machine" : `${n.toFixed(1)} s ${o.offsetSeconds < 0 ? "behind" : "ahead of"} this machine`;
  return `device clock: ${where} (±${o.uncertaintySeconds.toFixed(1)} s; certificates are backdated ${BACKDATE_SECONDS / 60} min)`;
}

// --- the host certificate -----------------------------------------------------------------------

/** What `ssh-keygen -L` reads in the host certificate a device has (provision/ca's CertInfo, the fields used here). */
export interface HostCertFacts {
  kind: "user" | "host";
  keyFingerprint: string;
  caFingerprint: string;
  principals: string[];
  serial: string;
  validAfter?: Date;
  validBefore?: Date;
}

export type HostCertDecision = { sign: false; reason: string } | { sign: true; reason: string };

/**
 * Whether enrollment signs the device's host key again: when it has no certificate of ours,
 * one of another CA, for another key or name, or one with less than 30 days left (renewal).
 */
export function hostCertDecision(o: { current?: HostCertFacts; hostKeyFingerprint: string; hostCaFingerprint: string; alias: string; now: Date }): HostCertDecision {
  const c = o.current;
  if (!c) return { sign: true, reason: "the device has no host certificate yet" };
  if (c.kind !== "host") return { sign: true, reason: "the device's certificate file holds a user certificate" };
  if (c.caFingerprint !== o.hostCaFingerprint) return { sign: true, reason: `its host certificate is signed by another CA (${c.caFingerprint})` };
  if (c.keyFingerprint !== o.hostKeyFingerprint) return { sign: true, reason: `its host certificate is for another key (${c.keyFingerprint}): the host key changed` };
  if (c.principals.length !== 1 || c.principals[0] !== o.alias) return { sign: true, reason: `its host certificate names ${c.principals.join(",") || "no principal"}, not ${o.alias}` };
  if (!c.validBefore) return { sign: true, reason: "its host certificate never expires (not the kit's)" };
  const state = hostCertState(c.validBefore, o.now);
  const days = daysLeft(c.validBefore, o.now);
  if (state === "ok") return { sign: false, reason: `its host certificate (serial ${c.serial}) has ${days} days left` };
  return { sign: true, reason: state === "expired" ? "its host certificate has expired" : `its host certificate has ${days} days left (renewed under ${HOST_CERT_LIFETIME.renewBelowSeconds / 86400})` };
}

/** Whole days from `now` to `until` (down; negative once past). */
export function daysLeft(until: Date, now: Date): number {
  return Math.floor((until.getTime() - now.getTime()) / 86_400_000);
}

// --- status ------------------------------------------------------------------------------------

/** A device's certificates as `status` shows them (from devices.json and revoked.json). */
export interface DeviceCertStatus {
  hostCert: { serial: string; validBefore: string; daysLeft: number; state: ReturnType<typeof hostCertState> } | null;
  /** the KRL version it last received (null: none recorded) */
  krlVersion: number | null;
  /**
   * the CA's KRL is newer than what it has; false for a device with no fleet certificates at
   * all (enrolled before the CA, or from another laptop): a push can't reach it, enrolling can
   */
  krlBehind: boolean;
  /** this laptop's CA records the device (it was enrolled from here with the CA) */
  certified: boolean;
  /** its clock as last measured, when it would refuse certificates */
  clock?: { offsetSeconds: number; measuredAt: string; problem: string };
}

export function deviceCertStatus(record: DeviceCaRecord | undefined, newestKrl: number, now: Date): DeviceCertStatus {
  const h = record?.hostCert;
  const validBefore = h ? new Date(h.validBefore) : undefined;
  const problem = record?.clock ? clockProblem(record.clock) : undefined;
  return {
    hostCert: h && validBefore ? { serial: h.serial, validBefore: h.validBefore, daysLeft: daysLeft(validBefore, now), state: hostCertState(validBefore, now) } : null,
    krlVersion: record?.krlVersion ?? null,
    krlBehind: record !== undefined && (record.krlVersion ?? 0) < newestKrl,
    certified: record !== undefined,
    ...(record?.clock && problem ? { clock: { offsetSeconds: record.clock.offsetSeconds, measuredAt: record.clock.measuredAt, problem } } : {}),
  };
}

/** The table's HOST CERT cell: days left, with a warning mark under 14. */
export function hostCertCell(s: DeviceCertStatus): string {
  if (!s.hostCert) return "-";
  if (s.hostCert.state === "expired") return "EXPIRED";
  return `${s.hostCert.daysLeft}d${s.hostCert.state === "warn" ? " (renew!)" : ""}`;
}

/** The table's KRL cell: the version it has, and whether that is behind. */
export function krlCell(s: DeviceCertStatus, newest: number): string {
  if (!s.certified) return "- (no certificates)";
  return s.krlVersion === null ? `- (behind, newest ${newest})` : s.krlBehind ? `${s.krlVersion} (behind, newest ${newest})` : String(s.krlVersion);
}
