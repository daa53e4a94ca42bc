// The laptop side as text: the rtunnel ssh_config fragment, its known_hosts file and the one
// Include line in the user's ~/.ssh/config. Pure functions; provision/laptop.ts does the I/O.
// Every value is checked by provision/validate.ts before it gets here, and checked again
// here, so a renderer can't be talked into writing a second directive on one line.
import SSHConfig, { LineType, type Line } from "ssh-config";
import { NAME_PATTERN, InputError, quotePath, show, validateHost, validateName, validatePort, validateUser } from "./validate.ts";

/** The Host alias of the relay hop; a device may not take this name. */
export const RELAY_ALIAS = "rtunnel-relay";
/** The account laptops use on the relay (DESIGN.md "Relay"). */
export const JUMP_USER = "jump";

export const hostKeyAlias = (device: string) => `rtunnel-${device}`;

export interface RelayHop {
  host: string;
  port: number;
}

export interface DeviceEntry {
  name: string;
  /** The device's forwarded port on the relay's loopback. */
  port: number;
  /** The account on the device. */
  user: string;
}

export interface LaptopConfig {
  relay: RelayHop;
  /** ssh_config paths (see validate.ts configPath): already safe, `~/` where possible. */
  identityFile: string;
  knownHostsFile: string;
  /** Keep one connection to the relay open for a while (not on Windows: no ControlMaster). */
  multiplex?: { controlPath: string; persist: string };
  devices: DeviceEntry[];
}

export const HEADER = [
  "# Written by rtunnel (npm run enroll-device). Re-running enrollment rewrites this file:",
  "# put your own settings in ~/.ssh/config instead.",
];

function checkPathValue(p: string): string {
  // configPath() made it safe; refuse anything that would need more than quoting anyway.
  // eslint-disable-next-line no-control-regex
  if (!p || /[\u0000-\u001f\u007f"\\]/.test(p) || p !== p.trim()) throw new InputError(`unsafe path for ssh_config: ${show(p)}`);
  return quotePath(p);
}

export function validateDeviceName(name: string): string {
  validateName(name);
  if (name === RELAY_ALIAS) throw new InputError(`device name ${show(name)} is reserved for the relay hop: choose another`);
  return name;
}

/** The text of ~/.ssh/config.d/rtunnel: the relay hop, then one Host block per device, by name. */
export function renderConfig(c: LaptopConfig): string {
  const identity = checkPathValue(c.identityFile);
  const knownHosts = checkPathValue(c.knownHostsFile);
  const lines = [...HEADER, ""];
  lines.push(
    `# The relay: laptops only pass through it (account ${JUMP_USER}).`,
    `Host ${RELAY_ALIAS}`,
    `  HostName ${validateHost(c.relay.host, "relay host")}`,
    `  Port ${validatePort(c.relay.port, "relay port")}`,
    `  User ${JUMP_USER}`,
    `  IdentityFile ${identity}`,
    "  IdentitiesOnly yes",
    `  UserKnownHostsFile ${knownHosts}`,
    "  StrictHostKeyChecking yes",
  );
  if (c.multiplex) {
    if (!/^[0-9]{1,5}[smh]?$/.test(c.multiplex.persist)) throw new InputError(`ControlPersist must be a duration like 10m (got ${show(c.multiplex.persist)})`);
    lines.push("  ControlMaster auto", `  ControlPath ${checkPathValue(c.multiplex.controlPath)}`, `  ControlPersist ${c.multiplex.persist}`);
  }
  const seen = new Set<string>();
  for (const d of [...c.devices].sort((a, b) => a.name.localeCompare(b.name))) {
    validateDeviceName(d.name);
    if (seen.has(d.name)) throw new InputError(`device ${show(d.name)} appears twice`);
    seen.add(d.name);
    lines.push(
      "",
      `# Device ${d.name}: its own sshd, reached through its reverse tunnel on the relay.`,
      `Host ${d.name}`,
      "  HostName 127.0.0.1",
      `  Port ${validatePort(d.port, "device port")}`,
      `  User ${validateUser(d.user)}`,
      `  ProxyJump ${RELAY_ALIAS}`,
      `  HostKeyAlias ${hostKeyAlias(d.name)}`,
      `  IdentityFile ${identity}`,
      "  IdentitiesOnly yes",
      `  UserKnownHostsFile ${knownHosts}`,
      "  StrictHostKeyChecking yes",
    );
  }
  return `${lines.join("\n")}\n`;
}

const value = (line: Line): string | undefined => {
  if (line.type !== LineType.DIRECTIVE) return undefined;
  return typeof line.value === "string" ? line.value : line.value.map((v) => v.val).join(" ");
};

/** Reads back the devices of a file renderConfig wrote (anything else in it is ignored). */
export function parseDevices(text: string): DeviceEntry[] {
  let parsed: SSHConfig;
  try {
    parsed = SSHConfig.parse(text);
  } catch {
    return [];
  }
  const devices: DeviceEntry[] = [];
  for (const line of parsed) {
    if (line.type !== LineType.DIRECTIVE || !("config" in line) || !/^host$/i.test(line.param)) continue;
    const name = value(line) ?? "";
    if (!NAME_PATTERN.test(name) || name === RELAY_ALIAS) continue;
    const get = (param: string) => value(line.config.find((l) => l.type === LineType.DIRECTIVE && l.param.toLowerCase() === param.toLowerCase()) ?? ({} as Line));
    if (get("HostKeyAlias") !== hostKeyAlias(name)) continue;
    try {
      devices.push({ name, port: validatePort(get("Port") ?? ""), user: validateUser(get("User") ?? "") });
    } catch {
      // a hand-edited block we can't read back: dropped, and rewritten by the next enrollment
    }
  }
  return devices;
}

/** Adds or replaces one device (by name). */
export function upsertDevice(devices: readonly DeviceEntry[], device: DeviceEntry): DeviceEntry[] {
  return [...devices.filter((d) => d.name !== device.name), device].sort((a, b) => a.name.localeCompare(b.name));
}

// known_hosts.rtunnel ------------------------------------------------------------------------

export interface KnownHost {
  /** `[host]:port`, `host`, or a HostKeyAlias */
  pattern: string;
  type: string;
  base64: string;
}

/** The known_hosts pattern OpenSSH looks up for host:port (brackets unless port 22). */
export function knownHostsPattern(host: string, port: number): string {
  validateHost(host);
  validatePort(port);
  return port === 22 ? host : `[${host}]:${port}`;
}

const KNOWN_HOST_LINE = /^(\S+) ([a-z0-9@.-]+) ([A-Za-z0-9+/]+={0,2})(?: .*)?$/;

export function parseKnownHosts(text: string): KnownHost[] {
  const out: KnownHost[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const m = KNOWN_HOST_LINE.exec(raw.trim());
    if (m) out.push({ pattern: m[1]!, type: m[2]!, base64: m[3]! });
  }
  return out;
}

const PATTERN_OK = /^(?:\[[A-Za-z0-9.:-]+\]:[0-9]{1,5}|[A-Za-z0-9.:-]+)$/;

/** Replaces every entry of `entry.pattern` by `entry`; keeps the others in order. */
export function upsertKnownHost(entries: readonly KnownHost[], entry: KnownHost): KnownHost[] {
  return [...entries.filter((e) => e.pattern !== entry.pattern), entry];
}

export function renderKnownHosts(entries: readonly KnownHost[]): string {
  const lines = ["# Written by rtunnel: the relay's and the enrolled devices' host keys (pinned)."];
  for (const e of entries) {
    if (!PATTERN_OK.test(e.pattern) || !/^[a-z0-9@.-]+$/.test(e.type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(e.base64)) {
      throw new InputError(`refusing to write a known_hosts entry for ${show(e.pattern)}`);
    }
    lines.push(`${e.pattern} ${e.type} ${e.base64}`);
  }
  return `${lines.join("\n")}\n`;
}

// The Include line in ~/.ssh/config ----------------------------------------------------------

export const INCLUDE_COMMENT = "# Added by rtunnel: keep this Include above every Host and Match line.";

/** Words of one ssh_config line, OpenSSH-style enough for Include detection. */
function words(rest: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m = re.exec(rest); m; m = re.exec(rest)) out.push(m[1] ?? m[2]!);
  return out;
}

/**
 * The user's ~/.ssh/config with our Include line at the top (after a BOM), or unchanged when
 * an equivalent Include already comes before the first Host/Match line. Everything else is
 * kept byte for byte; the new lines use the file's own line ending.
 */
export function ensureInclude(current: string | undefined, includePath: string): { text: string; changed: boolean } {
  const include = `Include ${checkPathValue(includePath)}`;
  if (current === undefined || current === "") return { text: `${INCLUDE_COMMENT}\n${include}\n`, changed: true };
  for (const raw of current.split(/\r?\n/)) {
    const line = raw.replace(/^\uFEFF/, "").trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([A-Za-z]+)(?:\s*=\s*|\s+)(.*)$/.exec(line);
    const keyword = m?.[1]?.toLowerCase();
    if (keyword === "host" || keyword === "match") break;
    if (keyword === "include" && words(m![2]!).includes(includePath)) return { text: current, changed: false };
  }
  const eol = current.includes("\r\n") ? "\r\n" : "\n";
  const bom = current.startsWith("\uFEFF") ? "\uFEFF" : "";
  return { text: `${bom}${INCLUDE_COMMENT}${eol}${include}${eol}${current.slice(bom.length)}`, changed: true };
}
