// The fleet certificates' contract (issue 15), in one place for the whole kit: the principal
// names a certificate carries and the relay and the devices accept, the key id, serials, the
// lifetimes and the backdating, and the files of the CA on the operator's machine, on the
// devices and on the relay. The operator's CA (provision/ca/), enrollment (device and laptop),
// the relay's admin verbs and principals command, and the tests all read them from here; where
// an image says the same thing in bash or Python, a unit test holds it to these values.
//
// Host certificates name the device by its HostKeyAlias (`hostKeyAlias()` in
// provision/laptop/model.ts, `rtunnel-NAME`): that function is the one owner of that name.
// Pure: no I/O.
import path from "node:path";
import { InputError, show } from "../input.ts";
import { NAME_PATTERN, RELAY_RUN_DIR, RELAY_STATE_PATH } from "./relay.ts";

// --- principals ----------------------------------------------------------------------------
//
// Names are NAME_PATTERN (`[a-z0-9][a-z0-9-]{0,62}`), so `:` and `+` are free to separate.

/** `rtunnel-device:NAME`: may log in to device NAME's account (its AuthorizedPrincipalsFile holds this one line). */
export const DEVICE_PRINCIPAL_PREFIX = "rtunnel-device:";
/**
 * `rtunnel-grant:A+B+C`: the WHOLE relay grant in one principal, device names sorted and
 * unique. sshd applies the options of the first matching principal line only, so the relay's
 * AuthorizedPrincipalsCommand prints one line for this principal with every granted port.
 */
export const GRANT_PRINCIPAL_PREFIX = "rtunnel-grant:";
export const GRANT_SEPARATOR = "+";
/**
 * OpenSSH refuses a certificate with more than 256 principals (SSHKEY_CERT_MAX_PRINCIPALS),
 * and a user certificate carries the grant principal plus one device principal per device.
 */
export const MAX_CERT_PRINCIPALS = 256;
export const MAX_GRANT_DEVICES = MAX_CERT_PRINCIPALS - 1;

export type Principal = { kind: "device"; device: string } | { kind: "grant"; devices: string[] };

function checkName(name: string, what: string): string {
  if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
    throw new InputError(`${what} must be 1-63 of a-z, 0-9 and -, starting with a letter or digit (got ${show(name)})`);
  }
  return name;
}

/** Sorted, unique, each a valid name, at least one and at most MAX_GRANT_DEVICES. */
export function canonicalDevices(devices: readonly string[]): string[] {
  const out = [...new Set(devices.map((d) => checkName(d, "a granted device name")))].sort();
  if (out.length === 0) throw new InputError("a grant needs at least one device");
  if (out.length > MAX_GRANT_DEVICES) throw new InputError(`a certificate can grant at most ${MAX_GRANT_DEVICES} devices (got ${out.length})`);
  return out;
}

export const devicePrincipal = (device: string): string => `${DEVICE_PRINCIPAL_PREFIX}${checkName(device, "device name")}`;

/** The grant principal of a set of devices (any order, duplicates ignored). */
export const grantPrincipal = (devices: readonly string[]): string => `${GRANT_PRINCIPAL_PREFIX}${canonicalDevices(devices).join(GRANT_SEPARATOR)}`;

/**
 * A principal the kit wrote, or undefined. Only the canonical spelling is read (a grant whose
 * names are unsorted, repeated or empty is not one of ours), so parse then render is the
 * identity: no two spellings name the same grant.
 */
export function parsePrincipal(text: string): Principal | undefined {
  if (typeof text !== "string") return undefined;
  if (text.startsWith(DEVICE_PRINCIPAL_PREFIX)) {
    const device = text.slice(DEVICE_PRINCIPAL_PREFIX.length);
    return NAME_PATTERN.test(device) ? { kind: "device", device } : undefined;
  }
  if (text.startsWith(GRANT_PRINCIPAL_PREFIX)) {
    const devices = text.slice(GRANT_PRINCIPAL_PREFIX.length).split(GRANT_SEPARATOR);
    if (devices.length > MAX_GRANT_DEVICES || !devices.every((d) => NAME_PATTERN.test(d))) return undefined;
    for (let i = 1; i < devices.length; i++) if (!(devices[i - 1]! < devices[i]!)) return undefined;
    return { kind: "grant", devices };
  }
  return undefined;
}

export function renderPrincipal(p: Principal): string {
  return p.kind === "device" ? devicePrincipal(p.device) : grantPrincipal(p.devices);
}

/**
 * Every principal of a user certificate for a grant of `devices`: the grant principal first
 * (the relay's), then one device principal per device, sorted (the devices').
 */
export function userCertPrincipals(devices: readonly string[]): string[] {
  const sorted = canonicalDevices(devices);
  return [grantPrincipal(sorted), ...sorted.map(devicePrincipal)];
}

// --- key id and serial ---------------------------------------------------------------------

/** Serials are unsigned 64-bit, never 0 (a KRL can't revoke serial 0); in JSON a decimal string (beyond a JS number). */
export const SERIAL_MAX = (1n << 64n) - 1n;
export const SERIAL_PATTERN = /^[1-9][0-9]{0,19}$/;

/** A serial from its decimal spelling, or undefined when it is not 1..2^64-1 written canonically. */
export function parseSerial(text: string): bigint | undefined {
  if (typeof text !== "string" || !SERIAL_PATTERN.test(text)) return undefined;
  const n = BigInt(text);
  return n <= SERIAL_MAX ? n : undefined;
}

export const KEY_ID_PREFIX = "rtunnel";

/** `rtunnel:NAME:SERIAL`: NAME is who the certificate was granted to (a laptop, or a device for its host certificate). */
export function keyId(name: string, serial: bigint): string {
  checkName(name, "certificate name");
  if (serial < 1n || serial > SERIAL_MAX) throw new InputError(`a serial is 1..2^64-1 (got ${serial})`);
  return `${KEY_ID_PREFIX}:${name}:${serial}`;
}

export function parseKeyId(text: string): { name: string; serial: bigint } | undefined {
  const m = typeof text === "string" ? /^rtunnel:([a-z0-9][a-z0-9-]{0,62}):([0-9]+)$/.exec(text) : null;
  const serial = m ? parseSerial(m[2]!) : undefined;
  return m && serial !== undefined ? { name: m[1]!, serial } : undefined;
}

// --- lifetimes -----------------------------------------------------------------------------

const MINUTE = 60;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * Every certificate starts this long before it is issued, so a device (or relay) whose clock
 * is a little behind still accepts it. A device further behind is reported by enrollment.
 */
export const BACKDATE_SECONDS = 5 * MINUTE;

/** `--for` of a user certificate (grant, login). */
export const USER_CERT_LIFETIME = { minSeconds: 5 * MINUTE, maxSeconds: 90 * DAY, grantDefault: "8h", loginDefault: "12h" } as const;

/**
 * A device's host certificate: issued for 90 days; any enrollment re-run renews it when less
 * than 30 days remain; `status` warns when less than 14 remain.
 */
export const HOST_CERT_LIFETIME = { seconds: 90 * DAY, renewBelowSeconds: 30 * DAY, warnBelowSeconds: 14 * DAY } as const;

export const LIFETIME_PATTERN = /^([1-9][0-9]{0,5})([mhd])$/;
const UNIT = { m: MINUTE, h: HOUR, d: DAY } as const;

/**
 * A lifetime like `30m`, `8h`, `7d` in seconds, within [min, max]; anything else is an
 * InputError that names the value and the fix.
 */
export function parseLifetime(text: string, bounds: { minSeconds: number; maxSeconds: number } = USER_CERT_LIFETIME): number {
  const m = typeof text === "string" ? LIFETIME_PATTERN.exec(text) : null;
  if (!m) throw new InputError(`a lifetime is a number and a unit, m (minutes), h (hours) or d (days), like 30m, 8h or 7d (got ${show(text)})`);
  const seconds = Number(m[1]) * UNIT[m[2] as keyof typeof UNIT];
  if (seconds < bounds.minSeconds || seconds > bounds.maxSeconds) {
    throw new InputError(`a lifetime must be between ${formatLifetime(bounds.minSeconds)} and ${formatLifetime(bounds.maxSeconds)} (got ${show(text)})`);
  }
  return seconds;
}

/** The shortest `--for` spelling of a whole number of minutes (`90d`, `8h`, `30m`). */
export function formatLifetime(seconds: number): string {
  if (seconds % DAY === 0) return `${seconds / DAY}d`;
  if (seconds % HOUR === 0) return `${seconds / HOUR}h`;
  return `${Math.round(seconds / MINUTE)}m`;
}

// --- files ---------------------------------------------------------------------------------

/** The CA's directory, under the operator's ssh dir (`--ssh-dir`, default ~/.ssh): mode 0700. */
export const CA_DIR = "rtunnel-ca";
export const CA_FILES = {
  /** the user CA's private half, encrypted with the CA passphrase (0600); signs laptops' keys */
  userCa: "user_ca",
  userCaPub: "user_ca.pub",
  /** the host CA's private half, encrypted (0600); signs devices' host keys */
  hostCa: "host_ca",
  hostCaPub: "host_ca.pub",
  /** one JSON line per certificate issued (IssuedCert) */
  issued: "issued.jsonl",
  /** the revocation list's source (RevokedList) */
  revoked: "revoked.json",
  /** `ssh-keygen -k` rendering of revoked.json (an empty KRL when nothing is revoked) */
  krl: "revoked.krl",
  /** per device: the KRL version it last received, its host certificate (DeviceCaRecords) */
  devices: "devices.json",
} as const;
export type CaFile = keyof typeof CA_FILES;

/** The absolute paths of the CA's files under an ssh dir. */
export function caPaths(sshDir: string): { dir: string } & Record<CaFile, string> {
  const dir = path.join(sshDir, CA_DIR);
  const files = Object.fromEntries(Object.entries(CA_FILES).map(([k, f]) => [k, path.join(dir, f)])) as Record<CaFile, string>;
  return { dir, ...files };
}

/** OpenSSH's own rule: the certificate of identity FILE is FILE-cert.pub (ssh loads it by itself). */
export function certificateFileFor(identityFile: string): string {
  return `${identityFile.replace(/\.pub$/, "")}-cert.pub`;
}

/**
 * On a device: all under /etc/ssh, root-owned 0644 (sshd's expectations), never the
 * distribution's own files. The principals directory holds one file per account, whose
 * content is `rtunnel-device:NAME`; the host certificate is named by the drop-in's
 * HostCertificate.
 */
export const DEVICE_CA_PATHS = {
  userCa: "/etc/ssh/rtunnel_user_ca.pub",
  krl: "/etc/ssh/rtunnel_revoked.krl",
  principalsDir: "/etc/ssh/rtunnel_principals",
  hostCert: "/etc/ssh/rtunnel_host_ed25519_key-cert.pub",
} as const;
export function devicePrincipalsFile(account: string): string {
  // an account name (provision/validate.ts validateUser): never `..`, never a slash
  if (typeof account !== "string" || !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(account)) throw new InputError(`a device account must be a plain account name (got ${show(account)})`);
  return `${DEVICE_CA_PATHS.principalsDir}/${account}`;
}

/**
 * In the relay container: what `set-user-ca` and `set-krl` keep on the state volume (they
 * survive restarts and replacement), and what the entrypoint renders from them at start into
 * the runtime directory, with an EMPTY KRL when none was ever set (a missing RevokedKeys file
 * makes sshd refuse every key).
 */
export const RELAY_CA_PATHS = {
  stateDir: `${RELAY_STATE_PATH}/ca`,
  userCa: `${RELAY_STATE_PATH}/ca/user_ca.pub`,
  krl: `${RELAY_STATE_PATH}/ca/revoked.krl`,
  runUserCa: `${RELAY_RUN_DIR}/user_ca.pub`,
  runKrl: `${RELAY_RUN_DIR}/revoked.krl`,
} as const;

// --- the records on the operator's machine ---------------------------------------------------

/** One line of issued.jsonl. Times are ISO 8601 UTC; the serial a decimal string. */
export interface IssuedCert {
  type: "user" | "host";
  /** who it was granted to (a laptop), or the device of a host certificate */
  name: string;
  serial: string;
  keyId: string;
  principals: string[];
  validAfter: string;
  validBefore: string;
  /** the certified public key's SHA256 fingerprint */
  keyFingerprint: string;
  issuedAt: string;
}

/** One revocation in revoked.json: a certificate's serial and key id (both go into the KRL). */
export interface Revocation {
  serial: string;
  /** its key id when known (from issued.jsonl), else absent */
  keyId?: string;
  /** who it was granted to, when known */
  name?: string;
  revokedAt: string;
}

/** revoked.json: `version` goes up by one with every change and is the KRL's own version. */
export interface RevokedList {
  version: number;
  revoked: Revocation[];
}

/** devices.json: what each device was last given. */
export interface DeviceCaRecord {
  /** the KRL version it last received */
  krlVersion?: number;
  krlAt?: string;
  /** its current host certificate */
  hostCert?: { serial: string; validAfter: string; validBefore: string };
  /** its clock against the operator's when last measured (enrollment): device minus operator, seconds */
  clock?: { offsetSeconds: number; uncertaintySeconds: number; measuredAt: string };
}
export type DeviceCaRecords = Record<string, DeviceCaRecord>;

// --- validity windows ----------------------------------------------------------------------

export interface ValidityWindow {
  validAfter: Date;
  validBefore: Date;
}

/**
 * The window of a certificate issued at `now` for `lifetimeSeconds`: from BACKDATE_SECONDS
 * before `now` (whole seconds) to `lifetimeSeconds` after it. Absolute, so a test can check
 * what ssh-keygen wrote.
 */
export function validityWindow(now: Date, lifetimeSeconds: number): ValidityWindow {
  if (!Number.isInteger(lifetimeSeconds) || lifetimeSeconds <= 0) throw new InputError(`a certificate lifetime is a positive number of seconds (got ${show(lifetimeSeconds)})`);
  const t = Math.floor(now.getTime() / 1000);
  if (!Number.isFinite(t)) throw new InputError(`not a time: ${show(now)}`);
  return { validAfter: new Date((t - BACKDATE_SECONDS) * 1000), validBefore: new Date((t + lifetimeSeconds) * 1000) };
}

/**
 * Where a device's host certificate stands at `now`: `ok`; `renew` (under 30 days left: the
 * next enrollment run signs a new one); `warn` (under 14 days: `status` says so, and renewal
 * is due); `expired`.
 */
export function hostCertState(validBefore: Date, now: Date): "ok" | "renew" | "warn" | "expired" {
  const left = (validBefore.getTime() - now.getTime()) / 1000;
  if (left <= 0) return "expired";
  if (left < HOST_CERT_LIFETIME.warnBelowSeconds) return "warn";
  if (left < HOST_CERT_LIFETIME.renewBelowSeconds) return "renew";
  return "ok";
}
