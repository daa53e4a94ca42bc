// The laptop side as one model: the rtunnel ssh_config fragment (~/.ssh/config.d/rtunnel) and
// its known_hosts file, read through the ssh-config parser (never regexes), changed by the
// commands (enroll, add-client, revoke), and rendered again. What a command did not set is
// kept: an option one command wrote survives the others, and so do known_hosts lines the kit
// does not own (comments, @cert-authority and @revoked markers). Pure: files.ts does the I/O.
//
// The fragment holds one relay hop today; the model keeps its relay under a name so that a
// second relay can be added later without changing the shape of the devices.
//
// With fleet certificates (issue 15): a device whose host key carries a certificate of the
// fleet's host CA is trusted through one `@cert-authority` line for its exact HostKeyAlias
// (never a wildcard: a CA line must not vouch for a name the kit does not own), and its plain
// pin goes (an old pin next to a CA line makes ssh report a changed key after a legitimate
// re-key); a laptop with a user certificate names it with `CertificateFile` on both hops
// (`IdentitiesOnly yes` is there already: an agent holding many keys offers none of them).
import SSHConfig, { LineType, type Line } from "ssh-config";
import { NAME_PATTERN } from "../../lib/contract/relay.ts";
import { InputError, show } from "../../lib/input.ts";
import type { PublicKey } from "../../lib/keys.ts";
import {
  entries,
  hostPattern,
  parseKnownHosts,
  removeKnownHost,
  renderKnownHosts,
  upsertKnownHost,
  type KnownHostsLine,
} from "../../lib/knownHosts.ts";
import { quotePath, validateHost, validateName, validatePort, validateUser } from "../validate.ts";

/** The Host alias of the relay hop; a device may not take this name. */
export const RELAY_ALIAS = "rtunnel-relay";
/** The account laptops use on the relay (DESIGN.md "Relay"). */
export const JUMP_USER = "jump";
/** How long an idle master connection to the relay stays up (the relay's jump account allows longer). */
export const CONTROL_PERSIST = "10m";

export const hostKeyAlias = (device: string) => `rtunnel-${device}`;

export const HEADER = [
  "# Written by rtunnel (npm run enroll-device). Re-running enrollment rewrites this file:",
  "# put your own settings in ~/.ssh/config instead.",
];

/** One directive the kit does not render itself, kept where it was found. */
export type Option = readonly [param: string, value: string];

export interface RelayHop {
  host: string;
  port: number;
  /**
   * One SSH connection to the relay carries every session for a while (ControlMaster auto,
   * ControlPersist), so a second `ssh raspi` costs one handshake, not two: `on`, `off` (the
   * user said --no-multiplex, and later renders keep it) or unset (an older fragment).
   */
  multiplex?: "on" | "off";
  /** the ControlPath to use when on (files.ts makes it fit the platform's socket limit) */
  controlPath?: string;
  /** directives of the hop the kit does not render itself */
  extra: Option[];
}

export interface DeviceHost {
  name: string;
  /** the device's forwarded port on the relay's loopback */
  port: number;
  /** the account on the device */
  user: string;
  extra: Option[];
}

export interface LaptopModel {
  /** ssh_config spellings (see validate.ts configPath): already safe, `~/` where possible */
  identityFile: string;
  knownHostsFile: string;
  /** this laptop's user certificate (CertificateFile on both hops), when it has one */
  certificateFile?: string;
  relays: Map<string, RelayHop>;
  devices: Map<string, DeviceHost>;
  known: KnownHostsLine[];
}

export function emptyModel(paths: { identityFile: string; knownHostsFile: string }): LaptopModel {
  return { ...paths, relays: new Map(), devices: new Map(), known: [] };
}

export function validateDeviceName(name: string): string {
  validateName(name);
  if (name === RELAY_ALIAS) throw new InputError(`device name ${show(name)} is reserved for the relay hop: choose another`);
  return name;
}

// --- reading -------------------------------------------------------------------------------

const valueOf = (line: Line): string => {
  if (line.type !== LineType.DIRECTIVE) return "";
  return typeof line.value === "string" ? line.value : line.value.map((v) => v.val).join(" ");
};

/** The directives the renderer writes in each kind of block: everything else is an Option. */
const RELAY_OWN = new Set(["hostname", "port", "user", "identityfile", "certificatefile", "identitiesonly", "userknownhostsfile", "stricthostkeychecking", "controlmaster", "controlpath", "controlpersist"]);
const DEVICE_OWN = new Set(["hostname", "port", "user", "proxyjump", "hostkeyalias", "identityfile", "certificatefile", "identitiesonly", "userknownhostsfile", "stricthostkeychecking"]);

/**
 * The model of a fragment and known_hosts file this kit wrote. Blocks it can't read back (a
 * hand edit that broke one) are dropped and rewritten by the next enrollment.
 */
export function readModel(fragment: string | undefined, known: string | undefined, defaults: { identityFile: string; knownHostsFile: string }): LaptopModel {
  const model = emptyModel(defaults);
  model.known = parseKnownHosts(known ?? "");
  let parsed: SSHConfig;
  try {
    parsed = SSHConfig.parse(fragment ?? "");
  } catch {
    return model;
  }
  for (const line of parsed) {
    if (line.type !== LineType.DIRECTIVE || !("config" in line) || line.param.toLowerCase() !== "host") continue;
    const name = valueOf(line);
    const directives = [...line.config].filter((l): l is Line & { param: string } => l.type === LineType.DIRECTIVE);
    const get = (param: string) => {
      const d = directives.find((l) => l.param.toLowerCase() === param.toLowerCase());
      return d ? valueOf(d) : undefined;
    };
    const extra = (own: Set<string>): Option[] => directives.filter((d) => !own.has(d.param.toLowerCase())).map((d) => [d.param, valueOf(d)] as const);
    if (name === RELAY_ALIAS) {
      const identity = get("IdentityFile");
      const knownHosts = get("UserKnownHostsFile");
      const certificate = get("CertificateFile");
      if (identity) model.identityFile = identity;
      if (knownHosts) model.knownHostsFile = knownHosts;
      if (certificate) model.certificateFile = certificate;
      try {
        const cm = get("ControlMaster")?.toLowerCase();
        model.relays.set(RELAY_ALIAS, {
          host: validateHost(get("HostName") ?? ""),
          port: validatePort(get("Port") ?? ""),
          ...(cm ? { multiplex: cm === "no" ? "off" : "on" } : {}),
          ...(get("ControlPath") ? { controlPath: get("ControlPath") } : {}),
          extra: extra(RELAY_OWN),
        });
      } catch {
        // an unreadable hop: the next enrollment writes it again from the relay facts
      }
      continue;
    }
    if (!NAME_PATTERN.test(name) || get("HostKeyAlias") !== hostKeyAlias(name)) continue;
    try {
      model.devices.set(name, { name, port: validatePort(get("Port") ?? ""), user: validateUser(get("User") ?? ""), extra: extra(DEVICE_OWN) });
    } catch {
      // a hand-edited block we can't read back: dropped, and rewritten by the next enrollment
    }
  }
  return model;
}

// --- changing ------------------------------------------------------------------------------

/** The relay hop from the relay facts; what the model knew of it (multiplex, options) is kept. */
export function withRelay(m: LaptopModel, relay: { host: string; port: number; hostKey: PublicKey }, o: { multiplex?: "on" | "off"; controlPath?: string } = {}): LaptopModel {
  const old = m.relays.get(RELAY_ALIAS);
  const multiplex = o.multiplex ?? old?.multiplex;
  const hop: RelayHop = {
    host: relay.host,
    port: relay.port,
    ...(multiplex ? { multiplex } : {}),
    ...((o.controlPath ?? old?.controlPath) ? { controlPath: o.controlPath ?? old?.controlPath } : {}),
    extra: old?.extra ?? [],
  };
  let known = m.known;
  if (old && (old.host !== relay.host || old.port !== relay.port)) known = removeKnownHost(known, hostPattern(old.host, old.port));
  known = upsertKnownHost(known, { pattern: hostPattern(relay.host, relay.port), key: relay.hostKey });
  return { ...m, relays: new Map(m.relays).set(RELAY_ALIAS, hop), known };
}

/** How the laptop trusts a device's host key: its key pinned, or the fleet's host CA for its HostKeyAlias. */
export type DeviceTrust = { hostKey: Pick<PublicKey, "type" | "base64">; hostCa?: undefined } | { hostCa: Pick<PublicKey, "type" | "base64">; hostKey?: Pick<PublicKey, "type" | "base64"> };

/**
 * Adds or replaces one device (by name) and trusts its host key; its kept options stay. With
 * `hostCa` (the device has a host certificate of that CA), one `@cert-authority` line for its
 * HostKeyAlias replaces its plain pin; without, the pin replaces any CA line it had.
 */
export function withDevice(m: LaptopModel, d: { name: string; port: number; user: string } & DeviceTrust): LaptopModel {
  validateDeviceName(d.name);
  const old = m.devices.get(d.name);
  const devices = new Map(m.devices).set(d.name, { name: d.name, port: d.port, user: d.user, extra: old?.extra ?? [] });
  return { ...m, devices, known: trust(m.known, d.name, d) };
}

/** The known_hosts lines by which a laptop trusts a device: its plain pin, or its host CA. */
const DEVICE_TRUST_MARKERS = [undefined, "@cert-authority"] as const;

/**
 * The known_hosts lines with `device` trusted as `t` says and by nothing else of ours: its
 * plain pins and its CA lines give way to one line, in the place of the first of them.
 */
function trust(known: readonly KnownHostsLine[], device: string, t: DeviceTrust): KnownHostsLine[] {
  const alias = hostKeyAlias(device);
  return upsertKnownHost(known, t.hostCa ? { marker: "@cert-authority", pattern: alias, key: t.hostCa } : { pattern: alias, key: t.hostKey }, DEVICE_TRUST_MARKERS);
}

/** Without one device: its Host block, its pinned host key and its CA line. */
export function withoutDevice(m: LaptopModel, name: string): LaptopModel {
  const devices = new Map(m.devices);
  devices.delete(name);
  return { ...m, devices, known: removeKnownHost(m.known, hostKeyAlias(name), DEVICE_TRUST_MARKERS) };
}

/** The device's pinned host key fingerprint is what the model holds under its HostKeyAlias. */
export function pinnedDeviceKey(m: LaptopModel, device: string): Pick<PublicKey, "type" | "base64"> | undefined {
  return entries(m.known).find((e) => e.pattern === hostKeyAlias(device) && !e.marker)?.key;
}

/** The host CA this laptop trusts for `device` (its `@cert-authority` line), when it has one. */
export function deviceHostCa(m: LaptopModel, device: string): Pick<PublicKey, "type" | "base64"> | undefined {
  return entries(m.known).find((e) => e.pattern === hostKeyAlias(device) && e.marker === "@cert-authority")?.key;
}

/** This laptop's user certificate on both hops (CertificateFile), or none. */
export function withCertificateFile(m: LaptopModel, certificateFile: string | undefined): LaptopModel {
  const { certificateFile: _old, ...rest } = m;
  return certificateFile === undefined ? rest : { ...rest, certificateFile };
}

// --- rendering -----------------------------------------------------------------------------

function checkPathValue(p: string): string {
  // configPath() made it safe; refuse anything that would need more than quoting anyway.
  // eslint-disable-next-line no-control-regex
  if (!p || /[\u0000-\u001f\u007f"\\]/.test(p) || p !== p.trim()) throw new InputError(`unsafe path for ssh_config: ${show(p)}`);
  return quotePath(p);
}

function optionLine([param, value]: Option): string {
  // eslint-disable-next-line no-control-regex
  if (!/^[A-Za-z]+$/.test(param) || /[\u0000-\u001f\u007f]/.test(value)) throw new InputError(`refusing to write the option ${show(`${param} ${value}`)}`);
  return `  ${param} ${/[\s#]/.test(value) && !/^".*"$/.test(value) ? `"${value}"` : value}`;
}

/** The text of ~/.ssh/config.d/rtunnel: the relay hop, then one Host block per device, by name. */
export function renderFragment(m: LaptopModel): string {
  const identity = checkPathValue(m.identityFile);
  const knownHosts = checkPathValue(m.knownHostsFile);
  // Both hops: this laptop's key (and its certificate) only, never every key of an agent (a
  // server counts each offer against MaxAuthTries), and the host key pinned in our own known_hosts.
  const certificate = m.certificateFile === undefined ? [] : [`  CertificateFile ${checkPathValue(m.certificateFile)}`];
  const pinnedIdentity = [`  IdentityFile ${identity}`, ...certificate, "  IdentitiesOnly yes", `  UserKnownHostsFile ${knownHosts}`, "  StrictHostKeyChecking yes"];
  const lines = [...HEADER, ""];
  const hop = m.relays.get(RELAY_ALIAS);
  if (!hop) throw new InputError("the laptop's ssh_config needs the relay hop before any device");
  lines.push(
    `# The relay: laptops only pass through it (account ${JUMP_USER}).`,
    `Host ${RELAY_ALIAS}`,
    `  HostName ${validateHost(hop.host, "relay host")}`,
    `  Port ${validatePort(hop.port, "relay port")}`,
    `  User ${JUMP_USER}`,
    ...pinnedIdentity,
  );
  if (hop.multiplex === "on") {
    if (!hop.controlPath || !/^[A-Za-z0-9_./~:-]+%C$/.test(hop.controlPath)) throw new InputError(`unsafe ControlPath ${show(hop.controlPath)}`);
    lines.push("  ControlMaster auto", `  ControlPath ${hop.controlPath}`, `  ControlPersist ${CONTROL_PERSIST}`);
  } else if (hop.multiplex === "off") {
    lines.push("  ControlMaster no");
  }
  lines.push(...hop.extra.map(optionLine));
  for (const d of [...m.devices.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    validateDeviceName(d.name);
    lines.push(
      "",
      `# Device ${d.name}: its own sshd, reached through its reverse tunnel on the relay.`,
      `Host ${d.name}`,
      "  HostName 127.0.0.1",
      `  Port ${validatePort(d.port, "device port")}`,
      `  User ${validateUser(d.user)}`,
      `  ProxyJump ${RELAY_ALIAS}`,
      `  HostKeyAlias ${hostKeyAlias(d.name)}`,
      ...pinnedIdentity,
      ...d.extra.map(optionLine),
    );
  }
  return `${lines.join("\n")}\n`;
}

// Unchanged with certificates: a fleet without a CA gets the same bytes as before.
export const KNOWN_HOSTS_HEADER = "# Written by rtunnel: the relay's and the enrolled devices' host keys (pinned).";

/** The text of known_hosts.rtunnel: our header once, then every line in order. */
export function renderKnown(m: LaptopModel): string {
  const body = m.known.filter((l) => !("kept" in l && l.kept === KNOWN_HOSTS_HEADER));
  return `${KNOWN_HOSTS_HEADER}\n${renderKnownHosts(body)}`;
}

// --- a laptop's whole ~/.ssh side, from nothing ----------------------------------------------

/** A laptop's files, relative to its ~/.ssh (the keys of renderLaptopFiles). */
export const LAPTOP_FILES = ["config.d/rtunnel", "known_hosts.rtunnel", "config"] as const;

/**
 * Pure: another laptop's three files (add-client --out, grant --out, and the fixtures'
 * laptops), paths spelled with ~/ so they work in that laptop's own ~/.ssh; the relay hop
 * multiplexed unless that laptop can't (Windows' OpenSSH has no ControlMaster). A device with
 * `hostCa` is trusted through the CA line (see withDevice); `certificateFile` (a `~/` path)
 * is that laptop's user certificate.
 */
export function renderLaptopFiles(o: {
  relay: { host: string; port: number; hostKey: PublicKey };
  devices: readonly ({ name: string; port: number; user: string } & DeviceTrust)[];
  multiplex: boolean;
  certificateFile?: string;
  /** that laptop's private key, as its ssh_config names it (default ~/.ssh/id_ed25519) */
  identityFile?: string;
}): Record<(typeof LAPTOP_FILES)[number], string> {
  let model = withRelay(emptyModel({ identityFile: o.identityFile ?? "~/.ssh/id_ed25519", knownHostsFile: "~/.ssh/known_hosts.rtunnel" }), o.relay, o.multiplex ? { multiplex: "on", controlPath: "~/.ssh/rtunnel-%C" } : {});
  model = withCertificateFile(model, o.certificateFile);
  for (const d of o.devices) model = withDevice(model, d);
  return { "config.d/rtunnel": renderFragment(model), "known_hosts.rtunnel": renderKnown(model), config: ensureInclude(undefined, "~/.ssh/config.d/rtunnel").text };
}

// --- the Include line in ~/.ssh/config -----------------------------------------------------

export const INCLUDE_COMMENT = "# Added by rtunnel: keep this Include above every Host and Match line.";

/**
 * The user's ~/.ssh/config with our Include line at the top (after a BOM), or unchanged when
 * an equivalent Include already comes before the first Host/Match line (read with the
 * ssh-config parser). Everything else is kept byte for byte; the new lines use the file's
 * own line ending.
 */
export function ensureInclude(current: string | undefined, includePath: string): { text: string; changed: boolean } {
  const include = `Include ${checkPathValue(includePath)}`;
  if (current === undefined || current === "") return { text: `${INCLUDE_COMMENT}\n${include}\n`, changed: true };
  // Line by line, so that a line the parser can't read (an unbalanced quote further down is
  // the user's business) does not hide our Include above it.
  for (const raw of current.replace(/^\uFEFF/, "").split(/\r?\n/)) {
    let line: Line | undefined;
    try {
      line = [...SSHConfig.parse(raw)].find((l) => l.type === LineType.DIRECTIVE);
    } catch {
      continue;
    }
    if (!line || line.type !== LineType.DIRECTIVE) continue;
    const param = line.param.toLowerCase();
    if (param === "host" || param === "match") break;
    const values = typeof line.value === "string" ? [line.value] : line.value.map((v) => v.val);
    if (param === "include" && values.includes(includePath)) return { text: current, changed: false };
  }
  const eol = current.includes("\r\n") ? "\r\n" : "\n";
  const bom = current.startsWith("\uFEFF") ? "\uFEFF" : "";
  return { text: `${bom}${INCLUDE_COMMENT}${eol}${include}${eol}${current.slice(bom.length)}`, changed: true };
}
