// The device's own sshd, made safe for the traffic of its tunnel. Every connection through the
// tunnel reaches that sshd from 127.0.0.1 (the agent runs with host networking and forwards
// the relay's port to 127.0.0.1:22), whichever laptop made it: per-source protections count
// every laptop as one source, so OpenSSH 10's PerSourcePenalties (on by default) let one
// laptop's failed logins lock every laptop out, and a password is guessable by anyone whom
// the relay lets reach the port. Enrollment therefore writes one drop-in,
// /etc/ssh/sshd_config.d/rtunnel.conf, the one place where the kit's device-side sshd settings
// live: loopback exempt from penalties, and from loopback public keys only (each a
// DropInSection; later settings, such as certificates, are more sections). Nothing changes
// for connections to the device's other addresses (its LAN address).
//
// Pure: the facts come from the device (`sshd -T` as root, read by provision/device/device.ts),
// the effects are the scripts of commands.ts. What a directive needs is detected from
// `sshd -T`'s keywords, not from a version number: OpenSSH 9.2 (Debian 12, Raspberry Pi OS 12)
// prints no `persourcepenaltyexemptlist`, so that directive is left out there.
import { createHash } from "node:crypto";
import SSHConfig, { LineType, type Line } from "ssh-config";
import { AGENT_CONF_DIR, DEFAULT_TARGET } from "../../lib/contract/agent.ts";
import { DEVICE_CA_PATHS, devicePrincipal, devicePrincipalsFile } from "../../lib/contract/ca.ts";

export const SSHD_DIR = "/etc/ssh";
export const SSHD_CONFIG = `${SSHD_DIR}/sshd_config`;
/** The drop-in: the kit's device-side sshd settings, all of them. */
export const SSHD_DROP_IN = `${SSHD_DIR}/sshd_config.d/rtunnel.conf`;
/** sshd_config as it was before the kit's last change to it. */
export const SSHD_CONFIG_BACKUP = `${SSHD_CONFIG}.rtunnel-backup`;
/**
 * The drop-in as it was before the kit replaced or removed it (a hand edit survives there).
 * Not beside it: an `Include sshd_config.d/*` would read a backup there as config.
 */
export const SSHD_DROP_IN_BACKUP = `${AGENT_CONF_DIR}/sshd-drop-in.rtunnel-backup`;
/**
 * Present only when enrollment added the Include line to sshd_config: the exact lines it
 * added, so that revoke-device takes out those and nothing else.
 */
export const SSHD_INCLUDE_MARKER = `${AGENT_CONF_DIR}/sshd-include-added`;

const [TARGET_HOST = "127.0.0.1", TARGET_PORT = "22"] = DEFAULT_TARGET.split(":");
/**
 * The addresses the device's sshd sees tunnel connections from: the agent's forward target
 * (127.0.0.1, so the connection's source is 127.0.0.1 too), and ::1, its IPv6 twin (a TARGET
 * of [::1]:22, and `ssh localhost` on the device, which resolves to ::1 first on Debian), so
 * that loopback is one rule whichever family a connection uses.
 */
export const TUNNEL_SOURCES: readonly string[] = [TARGET_HOST, "::1"];
/** The port they arrive on (the agent's forward target). */
export const TUNNEL_PORT = Number(TARGET_PORT);

/** One sshd_config line of the drop-in. */
export interface SshdDirective {
  /** as sshd_config spells it */
  keyword: string;
  value: string;
  /** for every connection, or only for those from TUNNEL_SOURCES (the drop-in's Match block) */
  scope: "global" | "tunnel";
  /** the comment above it */
  why: string;
  /**
   * Every OpenSSH the kit meets knows it, though `sshd -T` prints it only once it is set
   * (HostCertificate): kept even when `sshd -T` does not print its keyword.
   */
  known?: true;
  /**
   * A global directive that must also be what sshd uses for a tunnel connection (a Match block
   * of the device's own may set it for loopback): its check runs with `sshd -T -C` too.
   */
  checkTunnel?: true;
}

/** What the device's sshd says of itself, read before any change (see Device.sshdState). */
export interface SshdFacts {
  /** `sshd -V` (or `ssh -V`): for people; decisions use `global`'s keywords */
  version: string;
  /** `sshd -T`: every keyword this sshd knows (lowercase) and its effective value */
  global: ReadonlyMap<string, string>;
  /** `sshd -T -C` for a connection through the tunnel (from 127.0.0.1, as the login user) */
  tunnel: ReadonlyMap<string, string>;
}

/** `sshd -T` output: lowercase keyword → the rest of its first line (repeated keywords keep the first). */
export function parseSshdT(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^(\S+)\s*(.*)$/.exec(line.trim());
    if (m && !out.has(m[1]!.toLowerCase())) out.set(m[1]!.toLowerCase(), m[2]!.trim());
  }
  return out;
}

/** `sshd -T -C` spec of a connection through the tunnel from `address`, logging in as `user`. */
export function tunnelConnectionSpec(user: string, address: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(user)) throw new RangeError(`not an account name: ${JSON.stringify(user)}`);
  return `user=${user},host=${address},addr=${address},laddr=${address},lport=${TUNNEL_PORT}`;
}

/** A comma-separated sshd address list with `extra` appended where missing (`none` is the empty list). */
function withAddresses(list: string | undefined, extra: readonly string[]): string {
  const have = !list || list === "none" ? [] : list.split(",").filter(Boolean);
  return [...have, ...extra.filter((a) => !have.includes(a))].join(",");
}

/**
 * Does the device's effective AuthenticationMethods for tunnel connections already demand a
 * public key in every list, and more (`publickey,keyboard-interactive`: a second factor)?
 * Then it is stronger than "publickey" alone and is kept as it is.
 */
function demandsKeyAndMore(methods: string | undefined): boolean {
  if (!methods || methods === "any") return false;
  const lists = methods.split(/\s+/).map((l) => l.split(","));
  return lists.every((l) => l.includes("publickey")) && lists.some((l) => l.length > 1);
}

/**
 * One concern of the drop-in: its directives, decided from what the device's sshd says of
 * itself. The drop-in is the one place for the kit's device-side sshd settings, so a later one
 * (user certificates: `TrustedUserCAKeys`, for every connection or for tunnel connections
 * only) is one more section in DROP_IN_SECTIONS; rendering (global lines first, then one Match
 * block), the `sshd -T` checks of the change script, the plan and `--dry-run`, idempotence
 * and revoke-device's removal all follow from the directives with no other change. A section
 * whose directives name a file of its own (a CA key) adds that file to planDropIn's writes
 * and planDropInRemoval's, under the same sha256 guards.
 */
export interface DropInSection {
  /** names the concern (for tests and messages) */
  id: string;
  /**
   * Its directives for this sshd. Must be stable: rendered again from the facts of a device
   * that has the drop-in, they are the same (that is what makes a re-run change nothing).
   */
  directives(facts: SshdFacts): SshdDirective[];
  /**
   * The files its directives name, written by the same change BEFORE the drop-in (never a
   * drop-in naming a missing file: a missing RevokedKeys file makes sshd refuse every key),
   * each under its sha256 guard. A file of OWNED_FILES no section wants any more is removed
   * only after the reload that stops naming it.
   */
  files?(): SectionFile[];
  /** Why it can't go on this device as it is (a setting of the device's own it would silently replace). */
  conflicts?(facts: SshdFacts): string[];
  /** What the change script checks on the device once the files are in (before sshd -t passes it). */
  verify?(): FileVerification[];
}

/** A file of a section: root's, 0644, under /etc/ssh. */
export interface SectionFile {
  path: string;
  content: string | Buffer;
  /** the mode of a new file */
  mode: string;
  /** the mode of its directory, when the change has to make it */
  dirMode: string;
}

/**
 * A check the change script makes on a file it wrote: `krl` (ssh-keygen -Q reads it: a KRL
 * that sshd can't read refuses every key) or `sshd-silent` (`sshd -t` says nothing of it:
 * sshd reports a host certificate it can't use, such as one for another key, and carries on).
 */
export type FileVerification = { kind: "krl"; path: string; probe: string } | { kind: "sshd-silent"; path: string };

/** Loopback exempt from PerSourcePenalties (OpenSSH 10: on by default). */
export const PENALTY_EXEMPTION: DropInSection = {
  id: "penalty-exemption",
  directives: (facts) => [
    {
      keyword: "PerSourcePenaltyExemptList",
      // The device's own exemptions are kept: the first value sshd reads is the one it uses.
      value: withAddresses(facts.global.get("persourcepenaltyexemptlist"), TUNNEL_SOURCES),
      scope: "global",
      why: `Every laptop's connection through the tunnel comes from ${TUNNEL_SOURCES.join(",")}: a penalty for one laptop's failed logins would lock every laptop out.`,
    },
  ],
};

/** From loopback, public keys only: exempt from penalties, it must offer nothing that can be guessed. */
export const LOOPBACK_KEYS_ONLY: DropInSection = {
  id: "loopback-keys-only",
  directives: (facts) => {
    const all: SshdDirective[] = [{ keyword: "PubkeyAuthentication", value: "yes", scope: "tunnel", why: "Laptops log in through the tunnel with their keys." }];
    if (!demandsKeyAndMore(facts.tunnel.get("authenticationmethods"))) {
      const why = "Exempt from penalties, loopback takes nothing that can be guessed: public keys only.";
      all.push(
        { keyword: "AuthenticationMethods", value: "publickey", scope: "tunnel", why },
        { keyword: "PasswordAuthentication", value: "no", scope: "tunnel", why },
        { keyword: "KbdInteractiveAuthentication", value: "no", scope: "tunnel", why },
      );
    }
    return all;
  },
};

/** The drop-in's sections, in order: every device-side sshd setting of the kit (a fleet without a CA). */
export const DROP_IN_SECTIONS: readonly DropInSection[] = [PENALTY_EXEMPTION, LOOPBACK_KEYS_ONLY];

// --- fleet certificates (issue 15) ------------------------------------------------------------

/** What a device gets of the fleet's CA (enrollment puts it together from the CA on the operator's machine). */
export interface DeviceCertificates {
  /** the device's name: its account accepts the one principal rtunnel-device:NAME */
  device: string;
  /** the user CA's public key line(s), as TrustedUserCAKeys reads them */
  userCa: string;
  /** the revocation list (a binary KRL; an empty one when nothing is revoked) */
  krl: Buffer;
  /** the certificate of the device's ed25519 host key, one line; absent: the device keeps its plain pin */
  hostCertificate?: string;
}

/** The directive values that are ours: the paths of lib/contract/ca.ts. */
const CA_VALUES = {
  trustedusercakeys: DEVICE_CA_PATHS.userCa,
  revokedkeys: DEVICE_CA_PATHS.krl,
  authorizedprincipalsfile: `${DEVICE_CA_PATHS.principalsDir}/%u`,
} as const;

/** The files the certificate section may write for `account`: a change removes those no section wants. */
export function ownedFiles(account: string): string[] {
  return [DEVICE_CA_PATHS.userCa, DEVICE_CA_PATHS.krl, devicePrincipalsFile(account), DEVICE_CA_PATHS.hostCert];
}

/**
 * USER_CERTIFICATES: present only when the fleet has a CA. Every connection (the tunnel's and
 * the LAN's): the user CA is trusted (TrustedUserCAKeys), the KRL refuses what it revokes,
 * plain keys included (RevokedKeys), and a certificate logs in to an account only with a
 * principal of that account's file (AuthorizedPrincipalsFile; the device account's holds
 * rtunnel-device:NAME; other accounts have none, so no certificate logs in to them; keys in
 * authorized_keys are not concerned); and the host key carries its certificate (HostCertificate).
 */
export const USER_CERTIFICATES = "user-certificates";

export function userCertificates(c: DeviceCertificates, account: string): DropInSection {
  const principal = devicePrincipal(c.device);
  const why = "Fleet certificates (rtunnel's user CA, its revocation list, and one principal per account).";
  return {
    id: USER_CERTIFICATES,
    directives: () => [
      { keyword: "TrustedUserCAKeys", value: CA_VALUES.trustedusercakeys, scope: "global", why, checkTunnel: true },
      { keyword: "RevokedKeys", value: CA_VALUES.revokedkeys, scope: "global", why, checkTunnel: true },
      { keyword: "AuthorizedPrincipalsFile", value: CA_VALUES.authorizedprincipalsfile, scope: "global", why, checkTunnel: true },
      ...(c.hostCertificate === undefined
        ? []
        : [{ keyword: "HostCertificate", value: DEVICE_CA_PATHS.hostCert, scope: "global" as const, why: "The device's host key, certified by rtunnel's host CA (laptops trust the CA for its name).", known: true as const }]),
    ],
    files: () => [
      { path: DEVICE_CA_PATHS.userCa, content: withNewline(c.userCa), mode: "644", dirMode: "755" },
      { path: DEVICE_CA_PATHS.krl, content: c.krl, mode: "644", dirMode: "755" },
      { path: devicePrincipalsFile(account), content: `${principal}\n`, mode: "644", dirMode: "755" },
      ...(c.hostCertificate === undefined ? [] : [{ path: DEVICE_CA_PATHS.hostCert, content: withNewline(c.hostCertificate), mode: "644", dirMode: "755" }]),
    ],
    conflicts: (facts) =>
      Object.entries(CA_VALUES).flatMap(([keyword, ours]) => {
        const now = facts.global.get(keyword);
        return now === undefined || now === "none" || now === ours
          ? []
          : [`its sshd already sets ${keyword} ${now}, which rtunnel's drop-in would replace: move that setting out (or merge it by hand) before enrolling with certificates`];
      }),
    verify: () => [
      { kind: "krl", path: DEVICE_CA_PATHS.krl, probe: DEVICE_CA_PATHS.userCa },
      ...(c.hostCertificate === undefined ? [] : [{ kind: "sshd-silent" as const, path: DEVICE_CA_PATHS.hostCert }]),
    ],
  };
}

const withNewline = (text: string) => (text.endsWith("\n") ? text : `${text}\n`);

/** The drop-in's sections for this fleet: with its certificates when it has a CA. */
export function dropInSections(certs?: DeviceCertificates, account?: string): DropInSection[] {
  if (certs && account === undefined) throw new Error("dropInSections: the certificate section needs the device account");
  return [...DROP_IN_SECTIONS, ...(certs ? [userCertificates(certs, account!)] : [])];
}

/**
 * The drop-in's directives for this sshd, in order. A directive whose keyword this sshd does
 * not know (absent from `sshd -T`) is left out: that is how 9.2 gets no penalty exemption.
 * Two sections may not set one keyword in one scope: sshd would silently use the first.
 */
export function tunnelDirectives(facts: SshdFacts, sections: readonly DropInSection[] = DROP_IN_SECTIONS): SshdDirective[] {
  const seen = new Map<string, string>();
  const all: SshdDirective[] = [];
  for (const section of sections) {
    for (const d of section.directives(facts)) {
      const key = `${d.scope} ${d.keyword.toLowerCase()}`;
      const other = seen.get(key);
      if (other !== undefined) throw new Error(`the sshd drop-in sections ${other} and ${section.id} both set ${d.keyword} (${d.scope}): sshd would use the first only`);
      seen.set(key, section.id);
      all.push(d);
    }
  }
  return all.filter((d) => d.known || facts.global.has(d.keyword.toLowerCase()));
}

/** A comment wrapped at 92 columns. */
function comment(text: string, indent: string): string[] {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && indent.length + 2 + line.length + 1 + word.length > 92) {
      out.push(`${indent}# ${line}`);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...out, `${indent}# ${line}`];
}

/** The drop-in's text: the global directives first (a Match block runs to the end of its file), then one Match block. */
export function renderDropIn(directives: readonly SshdDirective[]): string {
  const block = (ds: readonly SshdDirective[], indent: string) => {
    const out: string[] = [];
    let why: string | undefined;
    for (const d of ds) {
      if (d.why !== why) out.push(...comment(d.why, indent));
      why = d.why;
      out.push(`${indent}${d.keyword} ${d.value}`);
    }
    return out;
  };
  const global = directives.filter((d) => d.scope === "global");
  const tunnel = directives.filter((d) => d.scope === "tunnel");
  const lines = [
    "# Written by rtunnel enrollment; revoke-device removes it. The device's sshd settings for",
    `# connections through the rtunnel tunnel, which all reach this sshd from ${TUNNEL_SOURCES.join(" or ")}.`,
    "# Rendered for this device's sshd (what `sshd -T` knows); enrolling again renders it anew.",
    ...(global.length ? ["", ...block(global, "")] : []),
    ...(tunnel.length ? ["", "# Through the tunnel (and to localhost on the device):", `Match Address ${TUNNEL_SOURCES.join(",")}`, ...block(tunnel, "\t")] : []),
  ];
  return `${lines.join("\n")}\n`;
}

/** One line `sshd -T` (global) or `sshd -T -C SPEC` must print once the drop-in is in place. */
export interface EffectCheck {
  spec?: string;
  line: string;
}

/** What sshd must say after the change: each directive as effective, for each tunnel source. */
export function effectChecks(directives: readonly SshdDirective[], user: string): EffectCheck[] {
  return directives.flatMap((d) => {
    const line = `${d.keyword.toLowerCase()} ${d.value}`;
    const tunnel = TUNNEL_SOURCES.map((a) => ({ spec: tunnelConnectionSpec(user, a), line }));
    return d.scope === "global" ? [{ line }, ...(d.checkTunnel ? tunnel : [])] : tunnel;
  });
}

/**
 * What the drop-in changes for people, when it takes passwords away from loopback (it does
 * unless the device already demands a key and a second factor there).
 */
export function loopbackConsequence(directives: readonly SshdDirective[]): string | undefined {
  if (!directives.some((d) => d.keyword === "AuthenticationMethods")) return undefined;
  return "a password (or keyboard-interactive) login through the tunnel or to localhost on the device no longer works: keys only; logins to the device's other addresses (its LAN address) are unchanged";
}

/** A readable summary of the directives, for the plan and the progress lines. */
export function describeDirectives(directives: readonly SshdDirective[]): string {
  const global = directives.filter((d) => d.scope === "global").map((d) => `${d.keyword} ${d.value}`);
  const tunnel = directives.filter((d) => d.scope === "tunnel").map((d) => `${d.keyword} ${d.value}`);
  return [...global, ...(tunnel.length ? [`from ${TUNNEL_SOURCES.join(",")}: ${tunnel.join(", ")}`] : [])].join("; ");
}

// --- the Include line -----------------------------------------------------------------------

/** glob(3) (no flags) as a RegExp: `*` and `?` stop at `/`, `[...]` is a class, and a leading dot must be matched explicitly. */
export function globRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    const atNameStart = i === 0 || pattern[i - 1] === "/";
    if (c === "*") re += atNameStart ? "(?!\\.)[^/]*" : "[^/]*";
    else if (c === "?") re += atNameStart ? "(?!\\.)[^/]" : "[^/]";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) re += "\\[";
      else {
        let body = pattern.slice(i + 1, end);
        const negate = body.startsWith("!");
        if (negate) body = body.slice(1);
        re += `[${negate ? "^/" : ""}${body.replace(/[\\^\]]/g, "\\$&")}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** A line's argument values (ssh-config keeps one or a list). */
function values(line: Line): string[] {
  if (line.type !== LineType.DIRECTIVE) return [];
  return typeof line.value === "string" ? [line.value] : line.value.map((v) => v.val);
}

/**
 * Does this sshd_config read the drop-in for every connection? Only an Include before the
 * first Match line does: one inside a Match block is read only for connections that match
 * it, and sshd reads a relative path under /etc/ssh.
 */
export function readsDropIn(mainConfig: string): boolean {
  let lines: Line[];
  try {
    lines = [...SSHConfig.parse(mainConfig)];
  } catch {
    return false; // sshd -t passed it, so at worst the drop-in is included twice, which is harmless
  }
  for (const line of lines) {
    if (line.type !== LineType.DIRECTIVE) continue;
    const keyword = line.param.toLowerCase();
    if (keyword === "match" || keyword === "host") return false;
    if (keyword !== "include") continue;
    for (const v of values(line)) {
      const absolute = v.startsWith("/") ? v : `${SSHD_DIR}/${v}`;
      if (globRegExp(absolute).test(SSHD_DROP_IN)) return true;
    }
  }
  return false;
}

/** The lines enrollment puts at the top of an sshd_config that does not read the drop-in. */
export const INCLUDE_LINES = [
  "# Added by rtunnel enrollment (revoke-device takes it out): the settings for tunnel connections.",
  `Include ${SSHD_DROP_IN}`,
] as const;

const eol = (text: string) => (/\r\n/.test(text) ? "\r\n" : "\n");

/**
 * sshd_config with the Include on top: sshd uses the first value it reads, and lines after a
 * Match line belong to that block. Only the drop-in is named: a config without the usual
 * `Include /etc/ssh/sshd_config.d/*.conf` gets no other file of that directory read.
 */
export function withIncludeLine(mainConfig: string): string {
  const nl = eol(mainConfig);
  return `${INCLUDE_LINES.join(nl)}${nl}${mainConfig}`;
}

/** sshd_config without the lines enrollment added (`added`, from the marker), or undefined when they are not there as written. */
export function withoutIncludeLine(mainConfig: string, added: string): string | undefined {
  const want = added.split(/\r?\n/).filter((l) => l !== "");
  if (!want.length) return undefined;
  const nl = eol(mainConfig);
  const lines = mainConfig.split(nl);
  for (let i = 0; i + want.length <= lines.length; i++) {
    if (want.every((w, j) => lines[i + j] === w)) return [...lines.slice(0, i), ...lines.slice(i + want.length)].join(nl);
  }
  return undefined;
}

// --- plans ----------------------------------------------------------------------------------

/** A file as the plan read it. */
export interface FileState {
  /** undefined: absent */
  text?: string;
  /** of its bytes, as the device computed it (what the change's guard compares) */
  sha256?: string;
}

export const sha256 = (text: string | Buffer) => createHash("sha256").update(text).digest("hex");
const shaOf = (f: FileState) => f.sha256 ?? (f.text === undefined ? undefined : sha256(f.text));

/** One file the change writes (or removes), guarded by what the plan read. */
export interface ConfigWrite {
  path: string;
  /** the new content; undefined: the file goes */
  text?: string;
  /** `base64`: `text` is the base64 of the file's bytes (a binary KRL) */
  encoding?: "base64";
  /** the file's sha256 as the plan read it; undefined: it was absent */
  expectSha256?: string;
  /** where its old content is copied once the change is validated */
  backup?: string;
  /** the new file's mode (an existing file keeps its own) */
  mode: string;
  /** the mode of its directory, when the change has to make it */
  dirMode: string;
  /**
   * A removal made only once sshd was reloaded without a directive naming the file (a
   * RevokedKeys file removed while sshd still names it would refuse every key); with `dropDir`,
   * that directory goes too when it is left empty.
   */
  afterReload?: true;
  dropDir?: string;
}

export interface SshdChange {
  writes: ConfigWrite[];
  checks: EffectCheck[];
  /** checks of the files written, by the change script (see FileVerification) */
  verify?: FileVerification[];
  /** what it does, for the plan and the progress lines */
  summary: string[];
}

export interface SshdState extends SshdFacts {
  mainConfig: FileState;
  dropIn: FileState;
  marker: FileState;
  /** the files of ownedFiles() as read (absent from the map: absent on the device) */
  owned?: ReadonlyMap<string, FileState>;
}

const write = (path: string, now: FileState, text: string | undefined, mode: string, backup?: string): ConfigWrite => ({
  path, text, mode, dirMode: path.startsWith(`${AGENT_CONF_DIR}/`) ? "700" : "755", ...(now.text !== undefined ? { expectSha256: shaOf(now) } : {}), ...(backup ? { backup } : {}),
});

/** The writes of the sections' files whose content differs on the device (before the drop-in: see DropInSection.files). */
function sectionFileWrites(sections: readonly DropInSection[], owned: ReadonlyMap<string, FileState>): { writes: ConfigWrite[]; wanted: Set<string> } {
  const writes: ConfigWrite[] = [];
  const wanted = new Set<string>();
  for (const f of sections.flatMap((x) => x.files?.() ?? [])) {
    wanted.add(f.path);
    const now = owned.get(f.path) ?? {};
    if (shaOf(now) === sha256(f.content)) continue;
    const binary = Buffer.isBuffer(f.content);
    writes.push({
      ...write(f.path, now, binary ? (f.content as Buffer).toString("base64") : (f.content as string), f.mode),
      dirMode: f.dirMode,
      ...(binary ? { encoding: "base64" as const } : {}),
    });
  }
  return { writes, wanted };
}

/** The removals, after the reload, of the owned files present on the device that no section wants. */
function orphanRemovals(owned: ReadonlyMap<string, FileState>, wanted: ReadonlySet<string>): ConfigWrite[] {
  return [...owned]
    .filter(([path, now]) => now.text !== undefined && !wanted.has(path))
    .map(([path, now]) => ({
      ...write(path, now, undefined, "644"),
      afterReload: true as const,
      ...(path.startsWith(`${DEVICE_CA_PATHS.principalsDir}/`) ? { dropDir: DEVICE_CA_PATHS.principalsDir } : {}),
    }));
}

/**
 * Enrollment's change to the device's sshd; no writes when it is in place already. The
 * sections' files come first (the drop-in never names a file that is not there), then the
 * drop-in and the Include line; files of the kit that no section wants any more (a CA removed)
 * go after the reload. `conflicts`: why the sections can't go on this device as it is.
 */
export function planDropIn(state: SshdState, user: string, sections: readonly DropInSection[] = DROP_IN_SECTIONS): SshdChange & { directives: SshdDirective[]; conflicts: string[] } {
  const directives = tunnelDirectives(state, sections);
  const conflicts = sections.flatMap((x) => x.conflicts?.(state) ?? []);
  const text = renderDropIn(directives);
  const owned = state.owned ?? new Map<string, FileState>();
  const files = sectionFileWrites(sections, owned);
  const writes: ConfigWrite[] = [...files.writes];
  const summary: string[] = [];
  if (files.writes.length) summary.push(`write ${files.writes.map((w) => w.path).join(", ")} (before the drop-in that names them)`);
  if (state.dropIn.text !== text) {
    writes.push(write(SSHD_DROP_IN, state.dropIn, text, "644", SSHD_DROP_IN_BACKUP));
    summary.push(`${state.dropIn.text === undefined ? "write" : "rewrite"} ${SSHD_DROP_IN} for ${state.version || "this sshd"}: ${describeDirectives(directives)}`);
  }
  const mainConfig = state.mainConfig.text ?? "";
  if (!readsDropIn(mainConfig)) {
    writes.push(write(SSHD_CONFIG, state.mainConfig, withIncludeLine(mainConfig), "644", SSHD_CONFIG_BACKUP));
    writes.push(write(SSHD_INCLUDE_MARKER, state.marker, `${INCLUDE_LINES.join("\n")}\n`, "600"));
    summary.push(`add "Include ${SSHD_DROP_IN}" at the top of ${SSHD_CONFIG} (it reads no sshd_config.d; backed up to ${SSHD_CONFIG_BACKUP}), noted in ${SSHD_INCLUDE_MARKER}`);
  }
  const orphans = orphanRemovals(owned, files.wanted);
  if (orphans.length) summary.push(`remove ${orphans.map((w) => w.path).join(", ")} once sshd no longer names them`);
  writes.push(...orphans);
  const verify = writes.length ? sections.flatMap((x) => x.verify?.() ?? []) : [];
  return { writes, checks: writes.length ? effectChecks(directives, user) : [], ...(verify.length ? { verify } : {}), summary, directives, conflicts };
}

/**
 * revoke-device's change: the drop-in goes, and the Include line if enrollment added it; the
 * files of its sections (the CA key, the KRL, the principals, the host certificate) once sshd
 * was reloaded without them.
 */
export function planDropInRemoval(state: Pick<SshdState, "mainConfig" | "dropIn" | "marker" | "owned">): SshdChange & { warnings: string[] } {
  const writes: ConfigWrite[] = [];
  const summary: string[] = [];
  const warnings: string[] = [];
  if (state.dropIn.text !== undefined) {
    writes.push(write(SSHD_DROP_IN, state.dropIn, undefined, "644", SSHD_DROP_IN_BACKUP));
    summary.push(`remove ${SSHD_DROP_IN}`);
  }
  if (state.marker.text !== undefined) {
    const without = state.mainConfig.text === undefined ? undefined : withoutIncludeLine(state.mainConfig.text, state.marker.text);
    if (without !== undefined) {
      writes.push(write(SSHD_CONFIG, state.mainConfig, without, "644", SSHD_CONFIG_BACKUP));
      summary.push(`take the Include line enrollment added out of ${SSHD_CONFIG} (backed up to ${SSHD_CONFIG_BACKUP})`);
    } else {
      // Edited since: whatever is there now is the owner's. An Include of a missing file is harmless.
      warnings.push(`warning: the Include line enrollment added to ${SSHD_CONFIG} is no longer there as written: left as it is`);
    }
    writes.push(write(SSHD_INCLUDE_MARKER, state.marker, undefined, "600"));
  }
  const orphans = orphanRemovals(state.owned ?? new Map(), new Set());
  if (orphans.length) summary.push(`remove ${orphans.map((w) => w.path).join(", ")} once sshd no longer names them`);
  writes.push(...orphans);
  return { writes, checks: [], summary, warnings };
}
