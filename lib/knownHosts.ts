// OpenSSH known_hosts files, for the whole kit: the pattern OpenSSH looks a host up by, one
// line per pinned key, and a reader that keeps what it does not own (comments, marker lines
// such as @cert-authority and @revoked, hashed names) so a rewrite changes only our entries.
// Pure: no I/O.
import { InputError, show } from "./input.ts";
import { keyLine, parsePublicKey, type PublicKey } from "./keys.ts";

/** The name OpenSSH looks up for host:port: `[host]:port`, or plain `host` on port 22. */
export function hostPattern(host: string, port: number): string {
  if (!/^[A-Za-z0-9.:-]+$/.test(host)) throw new InputError(`known_hosts: host ${show(host)} is not a plain name or address`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InputError(`known_hosts: port ${show(port)} is not 1-65535`);
  return port === 22 ? host : `[${host}]:${port}`;
}

// A plain name, a [name]:port, a HostKeyAlias: what the kit writes. Lists, negations, globs
// and hashed names are somebody else's.
const OUR_PATTERN = /^(?:\[[A-Za-z0-9.:-]+\]:[0-9]{1,5}|[A-Za-z0-9.:-]+)$/;

export type Marker = "@cert-authority" | "@revoked";

export interface KnownHost {
  marker?: Marker;
  /** a host pattern (plain or [host]:port) or a HostKeyAlias */
  pattern: string;
  key: Pick<PublicKey, "type" | "base64">;
}

/** One line of a known_hosts file: an entry, or a line kept as it is. */
export type KnownHostsLine = { entry: KnownHost } | { kept: string };

/** One entry as a line. */
export function knownHostsLine(e: KnownHost): string {
  if (!OUR_PATTERN.test(e.pattern)) throw new InputError(`refusing to write a known_hosts entry for ${show(e.pattern)}`);
  return `${e.marker ? `${e.marker} ` : ""}${e.pattern} ${keyLine(e.key)}`;
}

/**
 * Reads a known_hosts file. An entry is `[@marker ]PATTERN TYPE BASE64[ comment]` with one
 * pattern of ours and a key that parses; every other line (comments, other patterns, lines
 * with a key we can't read) is kept byte for byte.
 */
export function parseKnownHosts(text: string): KnownHostsLine[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.map((raw): KnownHostsLine => {
    const line = raw.replace(/\r$/, "");
    const m = /^(?:(@cert-authority|@revoked) +)?(\S+) +(\S+ \S+)(?: .*)?$/.exec(line.trim());
    if (!m || line.trim().startsWith("#") || !OUR_PATTERN.test(m[2]!)) return { kept: raw };
    try {
      const key = parsePublicKey(m[3]!, "known_hosts key", { minRsaBits: 0 });
      return { entry: { ...(m[1] ? { marker: m[1] as Marker } : {}), pattern: m[2]!, key: { type: key.type, base64: key.base64 } } };
    } catch {
      return { kept: raw };
    }
  });
}

export function renderKnownHosts(lines: readonly KnownHostsLine[]): string {
  return lines.map((l) => ("entry" in l ? knownHostsLine(l.entry) : l.kept)).join("\n") + (lines.length ? "\n" : "");
}

/** The plain (unmarked) entries, as a list. */
export function entries(lines: readonly KnownHostsLine[]): KnownHost[] {
  return lines.flatMap((l) => ("entry" in l ? [l.entry] : []));
}

/**
 * Replaces the entries of `e.pattern` with a marker in `replacing` (by default `e`'s own) by
 * `e`, in the place of the first of them, else at the end; other lines stay.
 */
export function upsertKnownHost(lines: readonly KnownHostsLine[], e: KnownHost, replacing: readonly (Marker | undefined)[] = [e.marker]): KnownHostsLine[] {
  const same = (l: KnownHostsLine) => "entry" in l && l.entry.pattern === e.pattern && replacing.includes(l.entry.marker);
  const at = lines.findIndex(same);
  const rest = lines.filter((l) => !same(l));
  const out = [...rest];
  out.splice(at < 0 ? rest.length : Math.min(at, rest.length), 0, { entry: e });
  return out;
}

/** Without the entries of `pattern` with a marker in `markers` (plain ones by default). */
export function removeKnownHost(lines: readonly KnownHostsLine[], pattern: string, markers: readonly (Marker | undefined)[] = [undefined]): KnownHostsLine[] {
  return lines.filter((l) => !("entry" in l && l.entry.pattern === pattern && markers.includes(l.entry.marker)));
}
