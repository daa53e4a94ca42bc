// Stack configuration: every `rtunnel:*` key is checked here, before any resource exists,
// so a typo stops `pulumi up` with one clear line instead of a half-built relay.
// Pure: the caller passes the raw strings (pulumi.Config#get) in.

import { parseCidr } from "./cidr.ts";
import { IAM_PRINCIPAL_ARN } from "./iam.ts";
import { DEFAULT_PORT_RANGE, RELAY_CONTAINER_PORT } from "../lib/contract/relay.ts";
import { keyLine, parsePublicKey } from "../lib/keys.ts";

export const DEFAULT_REMOTE_PORT = 12345;
export const DEFAULT_INSTANCE_TYPE = "t4g.nano";
export const DEFAULT_ALLOWED_CIDRS: readonly string[] = ["0.0.0.0/0", "::/0"];

export interface RelayConfig {
  remotePort: number;
  instanceType: string;
  allowedCidrs: { ipv4: string[]; ipv6: string[] };
  adminPublicKeys: string[];
  portRange: string;
  /** Pinned availability zone, or undefined to pick one that offers the instance type. */
  availabilityZone?: string;
  /** More administrators of the host key's KMS key, besides whoever runs `pulumi up`. */
  keyAdminArns: string[];
}

/** Raw config as Pulumi hands it over: strings (objects and arrays arrive as JSON text). */
export type RawConfig = (key: string) => string | undefined;

const k = (key: string) => `rtunnel:${key}`;

export function parseRemotePort(raw: string | undefined): number {
  if (raw === undefined || raw === "") return DEFAULT_REMOTE_PORT;
  if (!/^\d+$/.test(raw.trim())) {
    throw new TypeError(`${k("remotePort")} must be a whole number 1-65535 and not 22 (got ${JSON.stringify(raw)}): pulumi config set rtunnel:remotePort 12345`);
  }
  const port = Number(raw.trim());
  if (port < 1 || port > 65535 || port === 22) {
    throw new RangeError(`${k("remotePort")} must be 1-65535 and not 22 (got ${port}): pick another port, e.g. pulumi config set rtunnel:remotePort 12345`);
  }
  return port;
}

// The AMI is arm64 (Graviton), so only Graviton types boot it: a1, or a family whose
// generation digit is followed by "g" (t4g, m7g, c7gn, r8gd, im4gn, ...).
const GRAVITON_TYPE = /^(a1|[a-z]+\d+g[a-z]*(-flex)?)\.[a-z0-9]+$/;

export function parseInstanceType(raw: string | undefined): string {
  if (raw === undefined || raw === "") return DEFAULT_INSTANCE_TYPE;
  if (!/^[a-z0-9-]+\.[a-z0-9]+$/.test(raw)) {
    throw new TypeError(`${k("instanceType")} must look like "t4g.nano" (got ${JSON.stringify(raw)})`);
  }
  if (!GRAVITON_TYPE.test(raw)) {
    throw new RangeError(`${k("instanceType")} must be an arm64 (Graviton) type such as t4g.nano or t4g.micro, because the relay runs the arm64 Amazon Linux image (got "${raw}")`);
  }
  return raw;
}

/** Burstable types get standard credits: "unlimited" (the t4g default) can bill surplus CPU. */
export function isBurstable(instanceType: string): boolean {
  return /^t\d/.test(instanceType);
}

function parseJsonList(key: string, raw: string, example: string): unknown[] {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (e) {
    throw new TypeError(`${k(key)} must be a JSON list (got ${JSON.stringify(raw)}): ${example}`, { cause: e });
  }
  if (!Array.isArray(value)) {
    throw new TypeError(`${k(key)} must be a list (got ${JSON.stringify(raw)}): ${example}`);
  }
  return value;
}

export function parseAllowedCidrs(raw: string | undefined): { ipv4: string[]; ipv6: string[] } {
  const example = `pulumi config set --path 'rtunnel:allowedCidrs[0]' 203.0.113.0/24`;
  let entries: unknown[];
  if (raw === undefined || raw === "") entries = [...DEFAULT_ALLOWED_CIDRS];
  else if (/^[[{]/.test(raw.trim())) entries = parseJsonList("allowedCidrs", raw, example);
  else entries = raw.split(/[\s,]+/).filter((s) => s !== "");
  if (entries.length === 0) {
    throw new RangeError(`${k("allowedCidrs")} is empty, so nobody could reach the relay: ${example} (or remove the key to allow everyone)`);
  }
  const ipv4: string[] = [];
  const ipv6: string[] = [];
  for (const entry of entries) {
    const c = parseCidr(entry, k("allowedCidrs"));
    const list = c.family === 4 ? ipv4 : ipv6;
    if (!list.includes(c.cidr)) list.push(c.cidr);
  }
  return { ipv4, ipv6 };
}

/** A key comment that is safe anywhere the line goes (a heredoc, a shell word, authorized_keys). */
export const SAFE_KEY_COMMENT = /^[^\s"'\\`$]+$/;

/**
 * One admin public key: an authorized_keys line without options, `type base64 [comment]`,
 * the key checked by lib/keys.ts, the comment (the operator's name for it) one plain word.
 */
export function parseAdminKey(value: unknown, index: number): string {
  const key = `${k("adminPublicKeys")}[${index}]`;
  if (typeof value !== "string") {
    throw new TypeError(`${key} must be a public key line like "ssh-ed25519 AAAA... you@laptop" (got ${JSON.stringify(value)})`);
  }
  if (/PRIVATE KEY/.test(value)) {
    throw new TypeError(`${key} is a PRIVATE key: use the .pub file instead (cat ~/.ssh/id_ed25519.pub)`);
  }
  const line = value.trim();
  const comment = line.split(" ").slice(2).join(" ");
  if (comment && !SAFE_KEY_COMMENT.test(comment)) {
    throw new TypeError(`${key} is not an OpenSSH public key line without options (its comment ${JSON.stringify(comment.slice(0, 40))} must be one word without quotes, backslashes or $): use the contents of ~/.ssh/id_ed25519.pub`);
  }
  try {
    return keyLine(parsePublicKey(line, "it"), comment || undefined);
  } catch (e) {
    throw new TypeError(`${key} is not an OpenSSH public key line without options (${(e as Error).message}): use the contents of ~/.ssh/id_ed25519.pub`, { cause: e });
  }
}

export function parseAdminPublicKeys(raw: string | undefined): string[] {
  const example = `pulumi config set --path 'rtunnel:adminPublicKeys[0]' "$(cat ~/.ssh/id_ed25519.pub)"`;
  if (raw === undefined || raw.trim() === "") {
    throw new TypeError(`${k("adminPublicKeys")} is required (the operator's SSH public keys for the relay's admin account): ${example}`);
  }
  const entries = /^[[{]/.test(raw.trim())
    ? parseJsonList("adminPublicKeys", raw, example)
    : raw.split("\n").filter((l) => l.trim() !== "");
  if (entries.length === 0) {
    throw new TypeError(`${k("adminPublicKeys")} is an empty list: ${example}`);
  }
  return [...new Set(entries.map((e, i) => parseAdminKey(e, i)))];
}

export function parsePortRange(raw: string | undefined): string {
  if (raw === undefined || raw === "") return DEFAULT_PORT_RANGE;
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(raw.trim());
  if (!m) {
    throw new TypeError(`${k("portRange")} must look like "20000-29999" (got ${JSON.stringify(raw)})`);
  }
  const lo = Number(m[1]);
  const hi = Number(m[2]);
  if (lo < 1024 || hi > 65535 || lo > hi || (lo <= RELAY_CONTAINER_PORT && RELAY_CONTAINER_PORT <= hi)) {
    throw new RangeError(`${k("portRange")} must be LOW-HIGH within 1024-65535, LOW <= HIGH, not containing the relay's own port ${RELAY_CONTAINER_PORT} (got "${raw}"): e.g. 20000-29999`);
  }
  return `${lo}-${hi}`;
}

export function parseAvailabilityZone(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === "") return undefined;
  if (!/^[a-z]{2}(-[a-z]+)+-\d[a-z]$/.test(raw)) {
    throw new TypeError(`${k("availabilityZone")} must be a zone name like "us-east-1a" (got ${JSON.stringify(raw)})`);
  }
  return raw;
}

/**
 * Administrators of the host key's KMS key (IAM role or user ARNs, or the account's root),
 * besides the deployer. Worth one when `pulumi up` runs as a role that may be recreated (an
 * SSO permission set): a key policy naming only a deleted role can no longer be changed.
 */
export function parseKeyAdminArns(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === "") return [];
  const example = `pulumi config set --path 'rtunnel:keyAdminArns[0]' arn:aws:iam::123456789012:role/break-glass`;
  const entries = /^[[{]/.test(raw.trim()) ? parseJsonList("keyAdminArns", raw, example) : raw.split(/[\s,]+/).filter((s) => s !== "");
  return [...new Set(entries.map((e, i) => {
    if (typeof e !== "string" || !IAM_PRINCIPAL_ARN.test(e)) {
      throw new TypeError(`${k("keyAdminArns")}[${i}] must be an IAM role or user ARN (not an STS session ARN, which changes at every login) (got ${JSON.stringify(e)}): ${example}`);
    }
    return e;
  }))];
}

/** Reads and checks every key; the first problem throws, naming the key. */
export function parseRelayConfig(get: RawConfig): RelayConfig {
  const availabilityZone = parseAvailabilityZone(get("availabilityZone"));
  return {
    remotePort: parseRemotePort(get("remotePort")),
    instanceType: parseInstanceType(get("instanceType")),
    allowedCidrs: parseAllowedCidrs(get("allowedCidrs")),
    adminPublicKeys: parseAdminPublicKeys(get("adminPublicKeys")),
    portRange: parsePortRange(get("portRange")),
    keyAdminArns: parseKeyAdminArns(get("keyAdminArns")),
    ...(availabilityZone ? { availabilityZone } : {}),
  };
}

/** The zone for the instance and its data volume: the pinned one, else the first offering the type. */
export function pickAvailabilityZone(offered: readonly string[], instanceType: string, pinned?: string): string {
  if (pinned) {
    if (offered.length > 0 && !offered.includes(pinned)) {
      throw new RangeError(`${k("availabilityZone")} is "${pinned}", which does not offer ${instanceType} (zones that do: ${[...offered].sort().join(", ")})`);
    }
    return pinned;
  }
  const first = [...offered].sort()[0];
  if (!first) {
    throw new RangeError(`${k("instanceType")} ${instanceType} is not offered in any availability zone of this region: pick another type or region`);
  }
  return first;
}
