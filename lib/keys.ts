// SSH public keys, for the whole kit: the one parser of `TYPE BASE64 [comment]` lines and
// wire-format blobs, and the one fingerprint (SHA256, as `ssh-keygen -l` prints it). Keys go
// through sshpk, which checks each key's structure; the FIDO types (sk-*), which sshpk does
// not know, get the same strict check of their wire format here. Pure: no I/O.
import { createHash } from "node:crypto";
import sshpk from "sshpk";
import { InputError, show } from "./input.ts";

/** The key types the kit accepts anywhere (devices, laptops, admins, host keys). */
export const KEY_TYPES = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "ssh-rsa",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** RSA keys below this size are refused (the relay's sshd says RequiredRSASize 3072). */
export const MIN_RSA_BITS = 3072;

export interface PublicKey {
  type: KeyType;
  /** base64 of the SSH wire-format key blob, canonical (padded) */
  base64: string;
  /** `SHA256:...` as ssh-keygen -l prints it */
  fingerprint: string;
}

export const FINGERPRINT_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** SHA256 fingerprint of a key blob, as OpenSSH prints it (base64, no padding). */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** Reads the SSH wire format's length-prefixed strings. */
function wireStrings(blob: Buffer): Buffer[] | undefined {
  const out: Buffer[] = [];
  for (let at = 0; at < blob.length; ) {
    if (at + 4 > blob.length) return undefined;
    const len = blob.readUInt32BE(at);
    if (at + 4 + len > blob.length) return undefined;
    out.push(blob.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return out;
}

/** Why a blob is not a well-formed key of its type, or undefined. */
function blobProblem(type: KeyType, blob: Buffer, minRsaBits: number): string | undefined {
  const parts = wireStrings(blob);
  if (!parts?.length || parts[0]!.toString("latin1") !== type) return `its body does not hold a ${type} key`;
  if (type === "sk-ssh-ed25519@openssh.com") {
    return parts.length === 3 && parts[1]!.length === 32 && parts[2]!.length > 0 ? undefined : `its body is not a well-formed ${type} key`;
  }
  if (type === "sk-ecdsa-sha2-nistp256@openssh.com") {
    return parts.length === 4 && parts[1]!.toString("latin1") === "nistp256" && parts[2]!.length === 65 && parts[2]![0] === 4 && parts[3]!.length > 0
      ? undefined
      : `its body is not a well-formed ${type} key`;
  }
  try {
    const key = sshpk.parseKey(`${type} ${blob.toString("base64")}`, "ssh");
    if (key.type === "rsa" && key.size < minRsaBits) return `it is a ${key.size}-bit RSA key; at least ${minRsaBits} bits are needed (ssh-ed25519 is better)`;
  } catch (e) {
    return `its body does not decode (${(e as Error).message.replace(/^Failed to parse .*?: /, "")})`;
  }
  return undefined;
}

const isKeyType = (t: string): t is KeyType => (KEY_TYPES as readonly string[]).includes(t);

/** A key from its wire-format blob (what an SSH server presents as its host key: any RSA size). */
export function publicKeyFromBlob(blob: Buffer, what = "host key"): PublicKey {
  const type = wireStrings(blob)?.[0]?.toString("latin1") ?? "";
  if (!isKeyType(type)) throw new InputError(`${what}: unsupported key type ${show(type)}`);
  const problem = blobProblem(type, blob, 0);
  if (problem) throw new InputError(`${what}: ${problem}`);
  return { type, base64: blob.toString("base64"), fingerprint: fingerprintOf(blob) };
}

// TYPE, one space, canonical base64, then an optional printable comment: no options (they
// would come first), no second line, no control characters.
const LINE = /^([a-z0-9@.-]+) ([A-Za-z0-9+/]+={0,2})(?: [\x21-\x7e][\x20-\x7e]*)?$/;

/**
 * A public key line `TYPE BASE64 [comment]`, without options. The comment is dropped: the
 * kit writes its own comments. RSA keys under MIN_RSA_BITS are refused unless told otherwise
 * (a pinned host key of an older device may be smaller).
 */
export function parsePublicKey(line: string, what = "public key", o: { minRsaBits?: number } = {}): PublicKey {
  const m = typeof line === "string" ? LINE.exec(line.trim()) : null;
  if (!m || !isKeyType(m[1]!)) {
    throw new InputError(`${what} must be one line "TYPE BASE64 [comment]" of a known SSH key type (got ${show(line)})`);
  }
  const type = m[1] as KeyType;
  const blob = Buffer.from(m[2]!, "base64");
  if (blob.toString("base64") !== m[2]) throw new InputError(`${what} is not a valid ${type} key: its base64 is not canonical (got ${show(line)})`);
  const problem = blobProblem(type, blob, o.minRsaBits ?? MIN_RSA_BITS);
  if (problem) throw new InputError(`${what} is not a valid ${type} key: ${problem} (got ${show(line)})`);
  return { type, base64: m[2]!, fingerprint: fingerprintOf(blob) };
}

/** `TYPE BASE64[ COMMENT]`: the line to write (a comment of the kit's own, checked printable). */
export function keyLine(key: Pick<PublicKey, "type" | "base64">, comment?: string): string {
  if (comment !== undefined && !/^[\x21-\x7e]+$/.test(comment)) throw new InputError(`a key comment must be one printable word (got ${show(comment)})`);
  return comment ? `${key.type} ${key.base64} ${comment}` : `${key.type} ${key.base64}`;
}

/**
 * The keys of an authorized_keys text: each line's first `TYPE BASE64` of a known type (after
 * any options). Lines without a key the kit can read are skipped, never guessed at.
 */
export function authorizedKeys(text: string): PublicKey[] {
  const out: PublicKey[] = [];
  for (const line of text.split("\n")) {
    for (const m of line.matchAll(/(?:^|[\s,])([a-z0-9@.-]+) ([A-Za-z0-9+/]+={0,2})(?=\s|$)/g)) {
      if (!isKeyType(m[1]!)) continue;
      try {
        out.push(parsePublicKey(`${m[1]} ${m[2]}`, "authorized key", { minRsaBits: 0 }));
        break;
      } catch {
        // not a key we can read: left alone
      }
    }
  }
  return out;
}
