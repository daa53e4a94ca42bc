// What enrollment does on the device, over one pinned node-ssh connection. Reads come first
// (preflight), so a device that can't take part is turned away before anything is changed
// anywhere; each change is skipped when the device already has it.
import { PassThrough, Transform } from "node:stream";
import type { NodeSSH } from "node-ssh";
import type { AgentFacts } from "./agentDiagnosis.ts";
import { ExitError, EXIT } from "./errors.ts";
import { sh } from "./proc.ts";
import { parsePublicKey, type PublicKey } from "./validate.ts";

export const DEVICE_DIR = "/etc/rtunnel";
export const DEVICE_KEY = `${DEVICE_DIR}/id_ed25519`;
export const AGENT_CONTAINER = "rtunnel";

/** `uname -m` → Docker platform. */
export function platformOf(machine: string): string | undefined {
  const m: Record<string, string> = {
    x86_64: "linux/amd64",
    amd64: "linux/amd64",
    aarch64: "linux/arm64",
    arm64: "linux/arm64",
    armv7l: "linux/arm/v7",
    armv6l: "linux/arm/v6",
  };
  return m[machine.trim()];
}

/** The device agent's command (DESIGN.md "Device agent"), for one image reference. */
export function agentRunArgs(image: string): string[] {
  return ["run", "-d", "--name", AGENT_CONTAINER, "--restart", "unless-stopped", "--network", "host", "-v", `${DEVICE_DIR}:${DEVICE_DIR}:ro`, image];
}

export function renderAgentEnv(o: { relayHost: string; relayPort: number; forwardPort: number; target?: string }): string {
  return [
    "# Written by rtunnel enrollment.",
    `RELAY_HOST=${o.relayHost}`,
    `RELAY_PORT=${o.relayPort}`,
    `FORWARD_PORT=${o.forwardPort}`,
    `TARGET=${o.target ?? "127.0.0.1:22"}`,
    "",
  ].join("\n");
}

export interface Preflight {
  user: string;
  root: boolean;
  platform: string;
  /** the device key, when one is already there */
  deviceKey?: PublicKey;
}

export class Device {
  private sudo = "";

  constructor(
    readonly ssh: NodeSSH,
    readonly name: string,
    readonly host: string,
  ) {}

  /** Runs one command through the login shell; `root` adds `sudo -n` when we are not root. */
  async run(cmd: string, o: { root?: boolean; stdin?: string | NodeJS.ReadableStream; check?: boolean } = {}) {
    const full = o.root && this.sudo ? `${this.sudo}sh -c ${sh(cmd)}` : cmd;
    const r = await this.ssh.execCommand(full, { stdin: o.stdin as string | undefined });
    if ((o.check ?? true) && r.code !== 0) {
      const line = (r.stderr.trim() || r.stdout.trim()).split("\n").pop() ?? "";
      throw new ExitError(EXIT.device, `on the device ${this.name}, \`${cmd.split("\n")[0]}\` failed (exit ${r.code}): ${line}`);
    }
    return r;
  }

  /** Who we are on the device, and its machine type. */
  private async whoami(): Promise<{ user: string; root: boolean; machine: string }> {
    const id = await this.run("id -un; id -u; uname -m");
    const [user = "", uid = "", machine = ""] = id.stdout.split("\n").map((s) => s.trim());
    return { user, root: uid === "0", machine };
  }

  /** Root for later `run(..., { root: true })`: nothing when we are root, else `sudo -n`, which must be installed and must not ask. */
  private async useSudo(user: string, root: boolean): Promise<void> {
    if (root) return;
    if ((await this.run("command -v sudo", { check: false })).code !== 0) {
      throw new ExitError(EXIT.device, `sudo is not installed on the device ${this.name} and ${user} is not root: install sudo (apt-get install sudo) or enroll as root with --user root`);
    }
    if ((await this.run("sudo -n true", { check: false })).code !== 0) {
      throw new ExitError(
        EXIT.device,
        `sudo on the device ${this.name} asks for a password (user ${user}): allow it without one (a line "${user} ALL=(ALL) NOPASSWD: ALL" in /etc/sudoers.d/) or enroll as root with --user root`,
      );
    }
    this.sudo = "sudo -n ";
  }

  /** Root for later `run(..., { root: true })` (the fleet commands, through the tunnel). */
  async detectSudo(): Promise<void> {
    const { user, root } = await this.whoami();
    await this.useSudo(user, root);
  }

  /** Read-only checks: account, architecture, Docker, sudo, an existing device key. */
  async preflight(o: { installDocker: boolean }): Promise<Preflight> {
    const { user, root, machine } = await this.whoami();
    const platform = platformOf(machine);
    if (!platform) throw new ExitError(EXIT.device, `the device ${this.name} is a ${machine || "unknown"} machine: rtunnel's image is built for amd64, arm64, armv7 and armv6`);
    let install = false;
    const hasDocker = (await this.run("command -v docker", { check: false })).code === 0;
    if (!hasDocker) {
      if (!o.installDocker) {
        throw new ExitError(EXIT.device, `Docker is not installed on the device ${this.name}: install it (Debian/Raspberry Pi OS: sudo apt-get install docker.io) or re-run with --install-docker`);
      }
      install = true;
    }
    await this.useSudo(user, root);
    if (install) await this.installDocker();
    const info = await this.run("docker info --format '{{.ServerVersion}}'", { root: true, check: false });
    if (info.code !== 0) {
      throw new ExitError(EXIT.device, `Docker's daemon does not answer on the device ${this.name}: start it (sudo systemctl enable --now docker) and re-run`);
    }
    const pub = await this.run(`cat ${DEVICE_KEY}.pub 2>/dev/null || true`, { root: true });
    let deviceKey: PublicKey | undefined;
    if (pub.stdout.trim()) deviceKey = parsePublicKey(pub.stdout.trim(), `${DEVICE_KEY}.pub on the device`);
    return { user, root, platform, deviceKey };
  }

  /** --install-docker: the distribution's own package, then its service. */
  private async installDocker(): Promise<void> {
    const osr = await this.run("cat /etc/os-release 2>/dev/null || true");
    const ids = [...osr.stdout.matchAll(/^ID(?:_LIKE)?="?([^"\n]*)"?$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    let install: string;
    if (ids.some((i) => ["debian", "ubuntu", "raspbian"].includes(i))) {
      install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io";
    } else if (ids.some((i) => ["fedora", "rhel", "centos"].includes(i))) {
      install = "dnf install -y moby-engine";
    } else if (ids.includes("alpine")) {
      install = "apk add docker && rc-update add docker default && service docker start";
    } else if (ids.includes("arch")) {
      install = "pacman -S --noconfirm docker";
    } else {
      throw new ExitError(EXIT.device, `--install-docker doesn't know the distribution of the device ${this.name} (${ids.join(" ") || "no /etc/os-release"}): install Docker by hand and re-run`);
    }
    await this.run(install, { root: true });
    await this.run("if command -v systemctl >/dev/null; then systemctl enable --now docker; fi", { root: true });
  }

  /** Makes the device key (once) and returns its public half. The private half stays here. */
  async ensureDeviceKey(): Promise<PublicKey> {
    const script = [
      "set -e",
      "umask 077",
      `mkdir -p ${DEVICE_DIR}`,
      `chmod 700 ${DEVICE_DIR}`,
      `[ -f ${DEVICE_KEY} ] || ssh-keygen -q -t ed25519 -N '' -C ${sh(`rtunnel-${this.name}`)} -f ${DEVICE_KEY}`,
      `ssh-keygen -y -f ${DEVICE_KEY}`,
    ].join("\n");
    const r = await this.run(script, { root: true });
    return parsePublicKey(r.stdout.trim(), "the device key");
  }

  /** Writes a file under /etc/rtunnel atomically when its content differs; true when it changed. */
  async writeFile(file: string, content: string): Promise<boolean> {
    const now = await this.run(`cat ${sh(file)} 2>/dev/null || true`, { root: true });
    if (now.stdout === content.replace(/\n$/, "") || now.stdout === content) return false;
    await this.run(`umask 077; cat > ${sh(`${file}.tmp`)} && mv ${sh(`${file}.tmp`)} ${sh(file)}`, { root: true, stdin: content });
    return true;
  }

  async imageId(image: string): Promise<string | undefined> {
    const r = await this.run(`docker image inspect --format '{{.Id}}' ${sh(image)}`, { root: true, check: false });
    return r.code === 0 ? r.stdout.trim() : undefined;
  }

  /** Streams a `docker save` tarball into `docker load` on the device; onBytes reports progress. */
  async loadImage(tar: NodeJS.ReadableStream, onBytes: (n: number) => void): Promise<void> {
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        onBytes(chunk.length);
        done(null, chunk);
      },
    });
    const stdin = new PassThrough();
    tar.pipe(counter).pipe(stdin);
    await this.run("docker load", { root: true, stdin });
  }

  /** The agent container's image id and whether it runs, or undefined when there is none. */
  async agentState(): Promise<{ image: string; running: boolean } | undefined> {
    const r = await this.run(`docker inspect --format '{{.Image}} {{.State.Running}}' ${AGENT_CONTAINER}`, { root: true, check: false });
    if (r.code !== 0) return undefined;
    const [image = "", running] = r.stdout.trim().split(" ");
    return { image, running: running === "true" };
  }

  /** What the device's Docker says about the agent, for a tunnel that did not come up. */
  async agentFacts(): Promise<Omit<AgentFacts, "relay">> {
    const r = await this.run(`docker inspect --format '{{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.RestartCount}}' ${AGENT_CONTAINER}`, { root: true, check: false });
    const [status = "?", running, exitCode = "0", restarts = "0"] = r.stdout.trim().split(" ");
    const state = r.code === 0 ? { status, running: running === "true", exitCode: Number(exitCode), restartCount: Number(restarts) } : undefined;
    const logs = state ? await this.run(`docker logs --tail 12 ${AGENT_CONTAINER} 2>&1`, { root: true, check: false }) : undefined;
    return { state, log: (logs?.stdout ?? "").split("\n").map((l) => l.trimEnd()).filter(Boolean) };
  }

  async startAgent(image: string): Promise<void> {
    await this.run(`docker rm -f ${AGENT_CONTAINER} >/dev/null 2>&1 || true; docker ${agentRunArgs(image).map(sh).join(" ")}`, { root: true });
  }

  /** Adds the operator's key to the device account's authorized_keys unless it is there. */
  async authorize(key: PublicKey, comment: string): Promise<boolean> {
    const line = `${key.type} ${key.base64} ${comment}`;
    const script = [
      "set -e",
      "umask 077",
      'mkdir -p "$HOME/.ssh"',
      `if grep -qF -- ${sh(` ${key.base64}`)} "$HOME/.ssh/authorized_keys" 2>/dev/null; then echo present; exit 0; fi`,
      `printf '%s\\n' ${sh(line)} >> "$HOME/.ssh/authorized_keys"`,
      "echo added",
    ].join("\n");
    const r = await this.run(`sh -c ${sh(script)}`);
    return r.stdout.trim() === "added";
  }
}
