// CIDR parsing for the security group. Pure: no Pulumi, no I/O.
//
// We reject CIDRs with host bits set ("10.0.0.1/24") instead of silently widening or
// narrowing them: the operator meant something, and the error says which network it is.

import { isIPv4, isIPv6 } from "node:net";

export interface Cidr {
  family: 4 | 6;
  /** Canonical text: what goes into the security group. */
  cidr: string;
}

/** Network address of `addr/prefix` as text in the same family. */
function ipv4Network(addr: string, prefix: number): string {
  const n = addr.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
  const size = 2 ** (32 - prefix);
  const net = Math.floor(n / size) * size;
  return [24, 16, 8, 0].map((s) => Math.floor(net / 2 ** s) % 256).join(".");
}

/** The eight 16-bit groups of an IPv6 address (accepts `::` and embedded IPv4). */
export function ipv6Groups(addr: string): number[] {
  let text = addr.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const o = v4[1].split(".").map(Number);
    text = text.slice(0, -v4[1].length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill("0");
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16));
}

function ipv6Text(groups: number[]): string {
  // RFC 5952: lowercase, longest run of zero groups (length >= 2) becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

function ipv6Network(addr: string, prefix: number): string {
  const groups = ipv6Groups(addr).map((g, i) => {
    const keep = Math.max(0, Math.min(16, prefix - i * 16));
    return keep === 0 ? 0 : g & (0xffff << (16 - keep)) & 0xffff;
  });
  return ipv6Text(groups);
}

/**
 * Parses one CIDR for `key`. Bad shape throws TypeError; a prefix out of range or host
 * bits set throws RangeError. Messages name the key, the value and the fix.
 */
export function parseCidr(value: unknown, key = "rtunnel:allowedCidrs"): Cidr {
  if (typeof value !== "string") {
    throw new TypeError(`${key} entries must be CIDR strings like "203.0.113.0/24" or "2001:db8::/32" (got ${JSON.stringify(value)})`);
  }
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(value);
  const addr = m?.[1] ?? "";
  const v4 = isIPv4(addr) && /^(\d{1,3}\.){3}\d{1,3}$/.test(addr);
  const v6 = !v4 && isIPv6(addr) && !addr.includes("%");
  if (!m || (!v4 && !v6)) {
    throw new TypeError(`${key} has "${value}", which is not a CIDR: write an address and a prefix, like "203.0.113.7/32" or "2001:db8::/32"`);
  }
  const prefix = Number(m[2]);
  const max = v4 ? 32 : 128;
  if (prefix > max) {
    throw new RangeError(`${key} has "${value}": an IPv${v4 ? 4 : 6} prefix must be 0-${max} (got /${prefix})`);
  }
  const network = v4 ? ipv4Network(addr, prefix) : ipv6Network(addr, prefix);
  const canonical = `${network}/${prefix}`;
  const given = v4 ? addr : ipv6Text(ipv6Groups(addr));
  if (given !== network) {
    throw new RangeError(`${key} has "${value}", which has host bits set: did you mean "${canonical}"?`);
  }
  return { family: v4 ? 4 : 6, cidr: canonical };
}
