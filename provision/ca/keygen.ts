// Every ssh-keygen call the CA makes, as argv (run through lib/proc.ts, never a shell), and
// the texts it reads: the KRL spec, the times of `-V`, new serials. Pure: no I/O, so each
// argv is tested as it is.
//
// Passphrases never appear here: ssh-keygen and ssh-add ask for them through SSH_ASKPASS
// (askpass.ts), so no argv ever carries one (`-N`/`-P` are never used).
import { keyId as renderKeyId, parseKeyId, parsePrincipal, parseSerial, SERIAL_MAX, type Revocation, type ValidityWindow } from "../../lib/contract/ca.ts";
import { InputError, show } from "../../lib/input.ts";

/** What the CAs are: ed25519 (the default), or RSA whose every signature is rsa-sha2-512. */
export type CaAlgorithm = "ed25519" | "rsa";
/** RSA CAs are made with this many bits (the kit refuses RSA keys under 3072 anywhere). */
export const RSA_CA_BITS = 4096;
/** The signature algorithm of an RSA CA: never ssh-rsa (SHA-1), which OpenSSH 8.8+ refuses. */
export const RSA_SIGNATURE = "rsa-sha2-512";

/** `ssh-keygen` making one CA key pair at `file` (+ .pub); the passphrase comes from SSH_ASKPASS. */
export function generateArgv(o: { file: string; algorithm: CaAlgorithm; comment: string }): string[] {
  if (!/^[a-z0-9@._-]+$/.test(o.comment)) throw new InputError(`a CA key comment must be a plain word (got ${show(o.comment)})`);
  return ["-q", "-t", o.algorithm, ...(o.algorithm === "rsa" ? ["-b", String(RSA_CA_BITS)] : []), "-C", o.comment, "-f", o.file];
}

/** `YYYYMMDDHHMMSSZ`: an absolute UTC time as `ssh-keygen -V` reads it (the Z: OpenSSH 8.7+). */
export function sshTime(d: Date): string {
  if (Number.isNaN(d.getTime())) throw new InputError(`not a time: ${show(d)}`);
  const iso = d.toISOString(); // 2026-12-08T10:00:00.000Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
}

// A host certificate's principal is a HostKeyAlias (`rtunnel-NAME`); a user certificate's are
// the contract's principals. Neither may hold a comma (ssh-keygen's -n separator) or a space.
const HOST_PRINCIPAL = /^rtunnel-[a-z0-9][a-z0-9-]{0,62}$/;

export interface SignRequest {
  /** the CA's public half: ssh-keygen finds the private half in ssh-agent (-U) */
  caPub: string;
  caAlgorithm: CaAlgorithm;
  /** the public key file to certify; ssh-keygen writes its certificate beside it as NAME-cert.pub */
  keyFile: string;
  /** who it is for (a laptop's name, or the device of a host certificate) */
  name: string;
  serial: bigint;
  principals: readonly string[];
  window: ValidityWindow;
  host: boolean;
}

/**
 * `ssh-keygen -U -s CA.pub`: signs with the CA key held by ssh-agent (SSH_AUTH_SOCK), never a
 * private key file. The window is absolute (both ends), the serial and key id explicit.
 */
export function signArgv(r: SignRequest): string[] {
  if (r.principals.length === 0) throw new InputError("a certificate needs at least one principal");
  for (const p of r.principals) {
    const ok = r.host ? HOST_PRINCIPAL.test(p) : parsePrincipal(p) !== undefined;
    if (!ok) throw new InputError(`refusing to sign a ${r.host ? "host" : "user"} certificate for the principal ${show(p)}`);
  }
  if (r.serial < 1n || r.serial > SERIAL_MAX) throw new InputError(`a serial is 1..2^64-1 (got ${r.serial})`);
  if (!(r.window.validAfter.getTime() < r.window.validBefore.getTime())) throw new InputError("a certificate's validity must end after it starts");
  return [
    "-U",
    "-s",
    r.caPub,
    ...(r.caAlgorithm === "rsa" ? ["-t", RSA_SIGNATURE] : []),
    "-I",
    renderKeyId(r.name, r.serial),
    ...(r.host ? ["-h"] : []),
    "-n",
    r.principals.join(","),
    "-V",
    `${sshTime(r.window.validAfter)}:${sshTime(r.window.validBefore)}`,
    "-z",
    String(r.serial),
    r.keyFile,
  ];
}

/** `ssh-keygen -L`: a certificate's contents (run with TZ=UTC: it prints local times). */
export const inspectArgv = (certFile: string): string[] => ["-L", "-f", certFile];

/**
 * `ssh-keygen -k`: the KRL at `out`, with `version` as its version. With revocations it is
 * scoped to the user CA (`-s`: serials and key ids are per CA); with none, an empty KRL.
 */
export function krlArgv(o: { out: string; version: number; caPub: string; specFile?: string }): string[] {
  if (!Number.isSafeInteger(o.version) || o.version < 1) throw new InputError(`a KRL version is a positive integer (got ${show(o.version)})`);
  return ["-k", "-f", o.out, "-z", String(o.version), ...(o.specFile ? ["-s", o.caPub, o.specFile] : [])];
}

/** `ssh-keygen -Q -l`: a KRL's contents as text (its first line `# KRL version N`). */
export const krlListArgv = (krl: string): string[] => ["-Q", "-l", "-f", krl];

/** `ssh-keygen -Q`: exit 0 when `keyOrCert` is not revoked by `krl`, 1 when it is. */
export const krlQueryArgv = (krl: string, keyOrCert: string): string[] => ["-Q", "-f", krl, keyOrCert];

/**
 * The KRL spec of a revocation list: `serial: N` and `id: KEYID` for each certificate
 * (ssh-keygen(1) "KEY REVOCATION LISTS"); empty when nothing is revoked.
 */
export function krlSpec(revoked: readonly Revocation[]): string {
  const lines: string[] = [];
  for (const r of revoked) {
    if (parseSerial(r.serial) === undefined) throw new InputError(`not a serial: ${show(r.serial)}`);
    lines.push(`serial: ${r.serial}`);
    if (r.keyId !== undefined) {
      if (parseKeyId(r.keyId) === undefined) throw new InputError(`not a key id of ours: ${show(r.keyId)}`);
      lines.push(`id: ${r.keyId}`);
    }
  }
  return lines.length ? `${lines.join("\n")}\n` : "";
}

/**
 * A new serial: the issue time in seconds in the high 32 bits, 32 random bits below, so
 * serials are unique per CA without a counter file (two certificates in one second collide
 * with odds 2^-32; the caller also checks issued.jsonl) and sort by issue time.
 */
export function newSerial(now: Date, random32: number): bigint {
  const seconds = Math.floor(now.getTime() / 1000);
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > 0xffffffff) throw new InputError(`a serial's time must be 1970..2106 (got ${show(now)})`);
  if (!Number.isInteger(random32) || random32 < 0 || random32 > 0xffffffff) throw new InputError(`a serial's random part is 32 bits (got ${show(random32)})`);
  return (BigInt(seconds) << 32n) | BigInt(random32);
}

/** The time a serial of newSerial was made (its high 32 bits). */
export const serialTime = (serial: bigint): Date => new Date(Number(serial >> 32n) * 1000);
