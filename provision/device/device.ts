// A device, over one pinned node-ssh connection (on the LAN at enrollment, through its own
// tunnel for the fleet commands): runs the scripts of commands.ts as the login user or as
// root (directly, or through `sudo -n`, which must not ask), and knows who it is logged in as.
import type { NodeSSH } from "node-ssh";
import { AGENT_CONF_DIR, agentPath } from "../../lib/contract/agent.ts";
import { authorizedKeys, parsePublicKey, type PublicKey } from "../../lib/keys.ts";
import type { Script } from "../../lib/shell.ts";
import { ExitError, EXIT } from "../errors.ts";
import { parseEpochSeconds, type ClockReading } from "./certs.ts";
import {
  asRoot,
  authorizeKey,
  changeSshdConfig,
  deauthorizeKey,
  ensureDeviceKey,
  epochSeconds,
  hasCommand,
  hasSshd,
  inSh,
  readAuthorizedKeys,
  readFileBase64,
  readFileOrEmpty,
  sshdEffective,
  sshdTest,
  sshdVersion,
  sudoWithoutPassword,
  whoami,
  writeFileFromStdin,
} from "./commands.ts";
import { ownedFiles, parseSshdT, planDropInRemoval, SSHD_CONFIG, SSHD_DROP_IN, SSHD_INCLUDE_MARKER, TUNNEL_SOURCES, tunnelConnectionSpec, type FileState, type SshdChange, type SshdState } from "./sshd.ts";

/** The host key a host certificate is made for (the drop-in's HostCertificate names its certificate). */
export const ED25519_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub";

/** sshd -t's complaint: its last line but the "terminating, N bad configuration options" summary (stderr lines end in \r\n). */
export function sshdComplaint(output: string): string | undefined {
  return output.replace(/\r/g, "").split("\n").filter((l) => l && !/terminating, \d+ bad configuration option/.test(l)).pop();
}

/** What enrollment finds of the device's sshd (read as root). */
export type SshdFinding =
  | { kind: "absent" }
  /** `sshd -t` fails as the device is now: its last line */
  | { kind: "broken"; error: string }
  | { kind: "ok"; state: SshdState };

export interface Account {
  user: string;
  root: boolean;
  /** `uname -m` */
  machine: string;
}

export interface RunOptions {
  /** as root: directly when we are root, else through `sudo -n` (see useRoot) */
  root?: boolean;
  stdin?: string | NodeJS.ReadableStream;
  /** throw an ExitError(device) on a non-zero exit (default true) */
  check?: boolean;
}

export class Device {
  private sudo = false;
  private account?: Account;

  constructor(
    readonly ssh: NodeSSH,
    readonly name: string,
    readonly host: string,
  ) {}

  /** Runs one script through the login shell. */
  async run(script: Script, o: RunOptions = {}) {
    const text = (o.root && this.sudo ? asRoot(script) : script).text;
    const r = await this.ssh.execCommand(text, { stdin: o.stdin as string | undefined });
    if ((o.check ?? true) && r.code !== 0) {
      const line = (r.stderr.trim() || r.stdout.trim()).split("\n").pop() ?? "";
      throw new ExitError(EXIT.device, `on the device ${this.name}, \`${script.text.split("\n")[0]}\` failed (exit ${r.code}): ${line}`);
    }
    return r;
  }

  /** Who we are on the device, and its machine type (asked once). */
  async whoami(): Promise<Account> {
    if (!this.account) {
      const [user = "", uid = "", machine = ""] = (await this.run(whoami())).stdout.split("\n").map((s) => s.trim());
      this.account = { user, root: uid === "0", machine };
    }
    return this.account;
  }

  /** Root for later `run(..., { root: true })`: nothing when we are root, else `sudo -n`, which must be installed and must not ask. */
  async useRoot(): Promise<Account> {
    const a = await this.whoami();
    if (a.root) return a;
    if ((await this.run(hasCommand("sudo"), { check: false })).code !== 0) {
      throw new ExitError(EXIT.device, `sudo is not installed on the device ${this.name} and ${a.user} is not root: install sudo (apt-get install sudo) or enroll as root with --user root`);
    }
    if ((await this.run(sudoWithoutPassword(), { check: false })).code !== 0) {
      throw new ExitError(
        EXIT.device,
        `sudo on the device ${this.name} asks for a password (user ${a.user}): allow it without one (a line "${a.user} ALL=(ALL) NOPASSWD: ALL" in /etc/sudoers.d/) or enroll as root with --user root`,
      );
    }
    this.sudo = true;
    return a;
  }

  /** The device key, when one is there already (read-only). */
  async deviceKey(): Promise<PublicKey | undefined> {
    const pub = (await this.run(readFileOrEmpty(`${agentPath("key")}.pub`), { root: true })).stdout.trim();
    return pub ? parsePublicKey(pub, `${agentPath("key")}.pub on the device`) : undefined;
  }

  /** Makes the device key (once) and returns its public half. The private half stays here. */
  async ensureDeviceKey(): Promise<PublicKey> {
    return parsePublicKey((await this.run(ensureDeviceKey(this.name), { root: true })).stdout.trim(), "the device key");
  }

  /** Writes a file under /etc/rtunnel atomically when its content differs; true when it changed. */
  async writeFile(file: string, content: string): Promise<boolean> {
    if (!file.startsWith(`${AGENT_CONF_DIR}/`)) throw new Error(`refusing to write ${file} on the device: only ${AGENT_CONF_DIR}/ is ours`);
    const now = await this.run(readFileOrEmpty(file), { root: true });
    if (now.stdout === content.replace(/\n$/, "") || now.stdout === content) return false;
    await this.run(writeFileFromStdin(file), { root: true, stdin: content });
    return true;
  }

  /** Adds a key to the login account's authorized_keys unless it is there; true when added. */
  async authorize(key: PublicKey, comment: string): Promise<boolean> {
    return (await this.run(inSh(authorizeKey(key, comment)))).stdout.trim() === "added";
  }

  /** The keys the login account's authorized_keys holds. */
  async authorizedKeys(): Promise<PublicKey[]> {
    return authorizedKeys((await this.run(readAuthorizedKeys())).stdout);
  }

  /** A file's exact content (as root), or an absent one. */
  async readExact(file: string): Promise<FileState> {
    const [head = "", body = ""] = (await this.run(readFileBase64(file), { root: true })).stdout.split("\n");
    const [state, sha256] = head.split(" ");
    return state === "present" && sha256 ? { text: Buffer.from(body, "base64").toString("utf8"), sha256 } : {};
  }

  /** The files of the drop-in's sections (ownedFiles) as they are now; absent ones are not in the map. */
  async ownedFiles(user: string): Promise<Map<string, FileState>> {
    const out = new Map<string, FileState>();
    for (const file of ownedFiles(user)) {
      const now = await this.readExact(file);
      if (now.text !== undefined) out.set(file, now);
    }
    return out;
  }

  /**
   * The device's sshd as it is now (as root: `sshd -T` reads the host keys): its version, its
   * effective settings for everyone and for a tunnel connection logging in as `user`, and the
   * files the drop-in involves. Read-only.
   */
  async sshd(user: string): Promise<SshdFinding> {
    if ((await this.run(hasSshd(), { root: true, check: false })).code !== 0) return { kind: "absent" };
    const test = await this.run(sshdTest(), { root: true, check: false });
    if (test.code !== 0) return { kind: "broken", error: sshdComplaint(test.stderr || test.stdout) ?? `exit ${test.code}` };
    const [version, global, tunnel, mainConfig, dropIn, marker] = [
      (await this.run(sshdVersion(), { root: true })).stdout.trim().split(",")[0]!,
      parseSshdT((await this.run(sshdEffective(), { root: true })).stdout),
      parseSshdT((await this.run(sshdEffective(tunnelConnectionSpec(user, TUNNEL_SOURCES[0]!)), { root: true })).stdout),
      await this.readExact(SSHD_CONFIG),
      await this.readExact(SSHD_DROP_IN),
      await this.readExact(SSHD_INCLUDE_MARKER),
    ];
    return { kind: "ok", state: { version, global, tunnel, mainConfig, dropIn, marker, owned: await this.ownedFiles(user) } };
  }

  /** Applies a change to the device's sshd (changeSshdConfig: all or nothing); returns how sshd was reloaded. */
  async changeSshd(change: Pick<SshdChange, "writes" | "checks" | "verify">): Promise<string> {
    const r = await this.run(changeSshdConfig(change.writes, change.checks, change.verify), { root: true, check: false });
    if (r.code !== 0) {
      throw new ExitError(EXIT.device, `on the device ${this.name}, ${(r.stderr.trim() || r.stdout.trim()).split("\n").pop() ?? `the sshd change failed (exit ${r.code})`}`);
    }
    return /^sshd-reload: (.*)$/m.exec(r.stdout)?.[1] ?? "reloaded";
  }

  /**
   * revoke-device: the drop-in goes, and the Include line if enrollment added it (the marker
   * says), checked with sshd -t and reloaded; then the files of its sections (certificates).
   * Returns the files changed and any warning.
   */
  async removeSshdDropIn(): Promise<{ changed: string[]; warnings: string[]; how?: string }> {
    if ((await this.run(hasSshd(), { root: true, check: false })).code !== 0) return { changed: [], warnings: [] };
    const { user } = await this.whoami();
    const change = planDropInRemoval({
      mainConfig: await this.readExact(SSHD_CONFIG),
      dropIn: await this.readExact(SSHD_DROP_IN),
      marker: await this.readExact(SSHD_INCLUDE_MARKER),
      owned: await this.ownedFiles(user),
    });
    if (!change.writes.length) return { changed: [], warnings: change.warnings };
    const how = await this.changeSshd(change);
    return { changed: change.writes.map((w) => w.path), warnings: change.warnings, how };
  }

  /** One reading of the device's clock against this machine's (see certs.ts clockOffset). */
  async clock(): Promise<ClockReading> {
    const sentMs = Date.now();
    const out = (await this.run(epochSeconds())).stdout;
    const receivedMs = Date.now();
    const deviceSeconds = parseEpochSeconds(out);
    if (deviceSeconds === undefined) throw new ExitError(EXIT.device, `on the device ${this.name}, \`date +%s\` printed ${JSON.stringify(out.trim().slice(0, 40))}, not a time`);
    return { sentMs, deviceSeconds, receivedMs };
  }

  /** The public half of the device's ed25519 host key (what its host certificate certifies), when it has one. */
  async ed25519HostKey(): Promise<PublicKey | undefined> {
    const f = await this.readExact(ED25519_HOST_KEY);
    if (f.text === undefined) return undefined;
    try {
      const key = parsePublicKey(f.text.trim(), `${ED25519_HOST_KEY} on the device`);
      return key.type === "ssh-ed25519" ? key : undefined;
    } catch {
      return undefined;
    }
  }

  /** Takes a key out of the login account's authorized_keys (atomically). */
  async deauthorize(key: PublicKey): Promise<void> {
    await this.run(inSh(deauthorizeKey(key)));
  }
}
