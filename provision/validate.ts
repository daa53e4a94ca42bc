// Every value a person gives the CLI (names, hosts, ports, users, paths, host key pins) passes
// one of these checks before it ends up in an ssh_config, a known_hosts or a relay command.
// They are strict on purpose: a name with a newline, a quote or a leading `-` could add a
// directive (`Match exec ...`), split a line or become an option, so anything outside the
// documented shapes is refused rather than escaped. Pure: no I/O.
import { isIP } from "node:net";
import { NAME_PATTERN } from "../lib/contract/relay.ts";
import { InputError, show } from "../lib/input.ts";
import { FINGERPRINT_PATTERN, parsePublicKey } from "../lib/keys.ts";

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

/** `--device-host-key` takes a fingerprint (`SHA256:...`) or a public key line. */
export function parseHostKeyPin(pin: string): { fingerprint: string } {
  if (FINGERPRINT_PATTERN.test(pin)) return { fingerprint: pin };
  try {
    return { fingerprint: parsePublicKey(pin, "--device-host-key", { minRsaBits: 0 }).fingerprint };
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
