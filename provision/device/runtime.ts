// How the agent runs on a device: the seam between enrollment (and the fleet commands) and
// whatever starts containers there. Docker is the first runtime; a device without Docker
// (a systemd unit running the agent script, say) would be a second class with the same
// methods, and enrollment would not change.
import { PassThrough, Readable, Transform } from "node:stream";
import { AGENT_CONF_DIR } from "../../lib/contract/agent.ts";
import { platformOfMachine } from "../../lib/platform.ts";
import type { AgentFacts } from "./diagnosis.ts";
import type { Device } from "./device.ts";
import {
  agentContainer,
  agentLogs,
  agentStatus,
  buildImageFromStdin,
  distroIds,
  dockerServer,
  hasCommand,
  imageId,
  imageLabel,
  installDocker,
  loadImage,
  osRelease,
  startAgent,
  stopAgent,
} from "./commands.ts";

export interface RuntimeFacts {
  /** false: not installed (install() can fix that when the device's distribution is known) */
  installed: boolean;
  /** the daemon answers */
  running: boolean;
  version?: string;
  /** what the agent's image must be built for, e.g. linux/arm64 */
  platform?: string;
  /** why that platform, for the progress line */
  platformReason?: string;
}

export interface AgentRuntimeState {
  /** the image id the agent runs from */
  image: string;
  running: boolean;
}

export interface AgentFile {
  path: string;
  text: string;
}

export interface AgentRuntime {
  readonly kind: string;
  /** Read-only: is it there, does it answer, what does it run (asking may need root: see Device.useRoot). */
  preflight(): Promise<RuntimeFacts>;
  /** Installs the runtime itself from the device's own packages; undefined when it doesn't know how. */
  installCommand(): Promise<string | undefined>;
  installRuntime(): Promise<void>;
  /** The id of the agent image on the device, when it is there. */
  imageId(image: string): Promise<string | undefined>;
  /** Puts the agent image on the device from a `docker save` stream (plain or gzip). */
  installImage(tar: NodeJS.ReadableStream, onBytes: (n: number) => void): Promise<void>;
  /** A label of the agent image on the device ("" when it has none), when the image is there. */
  imageLabel(image: string, label: string): Promise<string | undefined>;
  /** Builds the agent image on the device from a build context tar (sent over the same connection). */
  buildImage(o: { image: string; platform: string; context: Buffer; labels: Record<string, string> }): Promise<void>;
  /** Writes the agent's files (under /etc/rtunnel); returns the paths that changed. */
  configure(files: readonly AgentFile[]): Promise<string[]>;
  start(image: string): Promise<void>;
  stop(): Promise<void>;
  state(): Promise<AgentRuntimeState | undefined>;
  /** What a person would look at when the tunnel does not come up. */
  facts(): Promise<Omit<AgentFacts, "relay">>;
}

export { platformOfMachine };

/**
 * The platform the agent's image must be built for: what the device's Docker is built for
 * (`docker version`'s Server.Arch), not the kernel (Raspberry Pi OS 32-bit on a Pi 4 or 5
 * boots a 64-bit kernel: `uname -m` says aarch64, its Docker runs arm containers); `uname -m`
 * gives the ARM variant. ARMv6 (Pi Zero, Pi 1) gets linux/arm/v5, Debian's armel, which runs
 * there: Debian publishes nothing for linux/arm/v6, and its armhf needs ARMv7.
 */
export function agentPlatform(serverArch: string | undefined, machine: string): { platform?: string; reason: string } {
  const fromUname = platformOfMachine(machine);
  const arch = serverArch?.trim();
  const armel = (why: string) => ({ platform: "linux/arm/v5", reason: `${why}: Debian's armel (linux/arm/v5) runs on ARMv6, and Debian publishes no linux/arm/v6 image` });
  if (!arch) {
    if (machine.trim() === "armv6l") return armel(`uname -m says armv6l`);
    return { platform: fromUname, reason: `uname -m says ${machine || "nothing"}` };
  }
  if (arch === "amd64" || arch === "arm64") return { platform: `linux/${arch}`, reason: `the device's Docker runs ${arch}${fromUname && fromUname !== `linux/${arch}` ? ` (uname -m says ${machine})` : ""}` };
  if (arch === "arm") {
    if (machine.trim() === "armv6l") return armel("the device's Docker runs arm, uname -m says armv6l");
    if (fromUname?.startsWith("linux/arm/")) return { platform: fromUname, reason: `the device's Docker runs arm, uname -m says ${machine}` };
    return { platform: "linux/arm/v7", reason: `the device's Docker runs arm, uname -m says ${machine || "nothing"}: a 32-bit userland on a 64-bit kernel, so linux/arm/v7` };
  }
  return { platform: undefined, reason: `the device's Docker runs ${arch}` };
}

/** Counts the bytes of a stream on their way through. */
function counting(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      onBytes(chunk.length);
      done(null, chunk);
    },
  });
}

export class DockerRuntime implements AgentRuntime {
  readonly kind = "docker";

  constructor(private readonly device: Device) {}

  async preflight(): Promise<RuntimeFacts> {
    const installed = (await this.device.run(hasCommand("docker"), { check: false })).code === 0;
    if (!installed) return { installed, running: false };
    // The daemon's socket is root's: asking it needs root (sudo -n, which must not ask).
    await this.device.useRoot();
    const server = await this.device.run(dockerServer(), { root: true, check: false });
    if (server.code !== 0) return { installed, running: false };
    const [version, arch] = server.stdout.trim().split(/\s+/);
    const { machine } = await this.device.whoami();
    const p = agentPlatform(arch, machine);
    return { installed, running: true, version, platform: p.platform, platformReason: p.reason };
  }

  async installCommand(): Promise<string | undefined> {
    const ids = distroIds((await this.device.run(osRelease())).stdout);
    return installDocker(ids)?.text;
  }

  async installRuntime(): Promise<void> {
    const ids = distroIds((await this.device.run(osRelease())).stdout);
    const script = installDocker(ids);
    if (!script) throw new Error(`no known way to install Docker on ${ids.join(" ") || "this distribution"}`);
    await this.device.run(script, { root: true });
  }

  async imageId(image: string): Promise<string | undefined> {
    const r = await this.device.run(imageId(image), { root: true, check: false });
    return r.code === 0 ? r.stdout.trim() : undefined;
  }

  async installImage(tar: NodeJS.ReadableStream, onBytes: (n: number) => void): Promise<void> {
    const stdin = new PassThrough();
    tar.pipe(counting(onBytes)).pipe(stdin);
    await this.device.run(loadImage(), { root: true, stdin });
  }

  async imageLabel(image: string, label: string): Promise<string | undefined> {
    const r = await this.device.run(imageLabel(image, label), { root: true, check: false });
    return r.code === 0 ? r.stdout.trim().replace(/^<no value>$/, "") : undefined;
  }

  async buildImage(o: { image: string; platform: string; context: Buffer; labels: Record<string, string> }): Promise<void> {
    await this.device.run(buildImageFromStdin(o), { root: true, stdin: Readable.from([o.context]) });
  }

  async configure(files: readonly AgentFile[]): Promise<string[]> {
    const changed: string[] = [];
    for (const f of files) {
      if (!f.path.startsWith(`${AGENT_CONF_DIR}/`)) throw new Error(`${f.path} is not an agent file`);
      if (await this.device.writeFile(f.path, f.text)) changed.push(f.path);
    }
    return changed;
  }

  async start(image: string): Promise<void> {
    await this.device.run(startAgent(image), { root: true });
  }

  async stop(): Promise<void> {
    await this.device.run(stopAgent(), { root: true });
  }

  async state(): Promise<AgentRuntimeState | undefined> {
    const r = await this.device.run(agentContainer(), { root: true, check: false });
    if (r.code !== 0) return undefined;
    const [image = "", running] = r.stdout.trim().split(" ");
    return { image, running: running === "true" };
  }

  async facts(): Promise<Omit<AgentFacts, "relay">> {
    const r = await this.device.run(agentStatus(), { root: true, check: false });
    const [status = "?", running, exitCode = "0", restarts = "0"] = r.stdout.trim().split(" ");
    const state = r.code === 0 ? { status, running: running === "true", exitCode: Number(exitCode), restartCount: Number(restarts) } : undefined;
    const logs = state ? await this.device.run(agentLogs(12), { root: true, check: false }) : undefined;
    return { state, log: (logs?.stdout ?? "").split("\n").map((l) => l.trimEnd()).filter(Boolean) };
  }
}
