// Every value that ends up in an ssh_config, a known_hosts or an authorized_keys line passes
// one of these checks first. They are strict on purpose: a name with a newline, a quote or a
// leading `-` could add a directive (`Match exec ...`), split a line or become an option, so
// anything outside the documented shapes is refused rather than escaped. Pure: no I/O.
import { createHash } from "node:crypto";
import { isIP } from "node:net";

/** Bad input from the user: the message names the parameter, the bad value and the fix. */
export class InputError extends Error {
  override name = "InputError";
}

/** Shows a hostile value safely inside a one-line message. */
export function show(value: unknown): string {
  const s = typeof value === "string" ? value : String(value);
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 77)}...` : s);
}

// DESIGN.md "Admin protocol": the relay accepts exactly these names.
export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function validateName(name: string, what = "device name"): string {
  if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
    throw new InputError(`${what} must be 1-63 of a-z, 0-9 and -, starting with a letter or digit (got ${show(name)})`);
  }
  return name;
}

const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const HOSTNAME = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*\\.?$`);

/** A DNS name or an IPv4/IPv6 address (no brackets, no port, no user@). */
export function validateHost(host: string, what = "host"): string {
  if (typeof host !== "string" || !(HOSTNAME.test(host) || isIP(host) !== 0)) {
    throw new InputError(`${what} must be a DNS name or an IP address (got ${show(host)})`);
  }
  return host;
}

export function validatePort(port: number | string, what = "port"): number {
  const n = typeof port === "number" ? port : /^[0-9]{1,5}$/.test(port) ? Number(port) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InputError(`${what} must be 1-65535 (got ${show(port)})`);
  return n;
}

// POSIX-portable account names (useradd's default rule, plus upper case for macOS/Windows).
const USER_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/;

export function validateUser(user: string, what = "device user"): string {
  if (typeof user !== "string" || !USER_PATTERN.test(user)) {
    throw new InputError(`${what} must be an account name of letters, digits, _ . - (got ${show(user)})`);
  }
  return user;
}

export const KEY_TYPES = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "ssh-rsa",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
] as const;

export interface PublicKey {
  type: string;
  /** base64 of the SSH wire-format key blob */
  base64: string;
  /** `SHA256:...` as ssh-keygen -l prints it */
  fingerprint: string;
}

/** SHA256 fingerprint of a key blob, as OpenSSH prints it (base64, no padding). */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** Reads the type string at the head of an SSH wire-format key blob. */
function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len < 1 || len > 64 || blob.length < 4 + len) return undefined;
  return blob.subarray(4, 4 + len).toString("latin1");
}

/**
 * A public key line `TYPE BASE64 [comment]`, without options. The comment is dropped: we
 * render keys with comments of our own. The blob must name the same type as the line.
 */
export function parsePublicKey(line: string, what = "public key"): PublicKey {
  const m = typeof line === "string" ? /^([a-z0-9@.-]+) ([A-Za-z0-9+/]+={0,2})(?: [\x21-\x7e][\x20-\x7e]*)?$/.exec(line.trim()) : null;
  const type = m?.[1];
  if (!m || !type || !(KEY_TYPES as readonly string[]).includes(type)) {
    throw new InputError(`${what} must be one line "TYPE BASE64 [comment]" of a known SSH key type (got ${show(line)})`);
  }
  const blob = Buffer.from(m[2]!, "base64");
  if (blob.toString("base64") !== m[2] || blobType(blob) !== type) {
    throw new InputError(`${what} is not a valid ${type} key (got ${show(line)})`);
  }
  return { type, base64: m[2]!, fingerprint: fingerprintOf(blob) };
}

export function keyFromBlob(blob: Buffer): PublicKey {
  const type = blobType(blob);
  if (!type || !(KEY_TYPES as readonly string[]).includes(type)) throw new InputError(`unsupported host key type ${show(type)}`);
  return { type, base64: blob.toString("base64"), fingerprint: fingerprintOf(blob) };
}

export const FINGERPRINT_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** `--device-host-key` takes a fingerprint (`SHA256:...`) or a public key line. */
export function parseHostKeyPin(pin: string): { fingerprint: string } {
  if (FINGERPRINT_PATTERN.test(pin)) return { fingerprint: pin };
  try {
    return { fingerprint: parsePublicKey(pin).fingerprint };
  } catch {
    throw new InputError(`--device-host-key must be SHA256:... (from ssh-keygen -lf) or a public key line (got ${show(pin)})`);
  }
}

// Characters that OpenSSH would read as something other than part of a path: quotes and
// backslash (argv_split), % (tokens), $ (${ENV}), glob characters (Include), = (separator
// for some parsers), and anything that is not printable.
// eslint-disable-next-line no-control-regex
const PATH_FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u2028\u2029"'\\%$*?[\]=]/;

/**
 * A path as written into ssh_config: forward slashes (Windows' OpenSSH reads them too), `~/`
 * for paths under the home directory so the file also works on a copy of the directory.
 */
export function configPath(absolute: string, home: string, windows = false): string {
  const norm = (p: string) => (windows ? p.replace(/\\/g, "/") : p);
  const abs = norm(absolute);
  const h = norm(home).replace(/\/+$/, "");
  let out = abs;
  if (h && (abs === h || abs.startsWith(`${h}/`))) out = `~${abs.slice(h.length)}`;
  if (PATH_FORBIDDEN.test(out) || out !== out.trim() || out.length === 0) {
    throw new InputError(`path ${show(absolute)} can't be written into ssh_config safely (quotes, backslashes, % $ * ? [ ] = or control characters): use --ssh-dir/--identity without them`);
  }
  return out;
}

/** A path value for an ssh_config line: quoted when it has spaces or `#`. */
export function quotePath(p: string): string {
  return /[\s#]/.test(p) ? `"${p}"` : p;
}
