// A device, over one pinned node-ssh connection (on the LAN at enrollment, through its own
// tunnel for the fleet commands): runs the scripts of commands.ts as the login user or as
// root (directly, or through `sudo -n`, which must not ask), and knows who it is logged in as.
import type { NodeSSH } from "node-ssh";
import { AGENT_CONF_DIR, agentPath } from "../../lib/contract/agent.ts";
import { authorizedKeys, parsePublicKey, type PublicKey } from "../../lib/keys.ts";
import type { Script } from "../../lib/shell.ts";
import { ExitError, EXIT } from "../errors.ts";
import { asRoot, authorizeKey, deauthorizeKey, ensureDeviceKey, hasCommand, inSh, readAuthorizedKeys, readFileOrEmpty, sudoWithoutPassword, whoami, writeFileFromStdin } from "./commands.ts";

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

  /** Takes a key out of the login account's authorized_keys (atomically). */
  async deauthorize(key: PublicKey): Promise<void> {
    await this.run(inSh(deauthorizeKey(key)));
  }
}
