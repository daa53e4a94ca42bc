// The agent image on the laptop's side: built from images/rtunnel for the device's platform
// (or a given one used as it is), and sent to the device as a gzip-compressed `docker save`
// stream over the SSH channel, with a progress bar. `docker load` reads gzip in every Docker
// a device is likely to run (Debian 12 and Raspberry Pi OS 12 ship 20.10).
//
// The build context is one deterministic tar (lib/docker/context.ts) given to `docker build -`:
// the same bytes here and, with --build-on device, on the device over the SSH connection; its
// Dockerfile's `FROM debian:trixie-slim` names --base-image instead when one is given; its
// sha256 is the image's `rtunnel.context` label. The classic image store keeps one platform
// per tag, so the default tag names the platform (rtunnel/rtunnel:latest-arm64).
import path from "node:path";
import { createGzip } from "node:zlib";
import cliProgress from "cli-progress";
import { buildFromTar, detectBuilder } from "../../lib/docker/build.ts";
import { buildContext, CONTEXT_LABEL, type BuildContext } from "../../lib/docker/context.ts";
import { enginePlatform, engineRuns } from "../../lib/docker/platformProbe.ts";
import { platformInfo, platformTag } from "../../lib/platform.ts";
import { repoRoot } from "../../lib/paths.ts";
import { run, spawnProcess } from "../../lib/proc.ts";
import { ExitError, EXIT } from "../errors.ts";
import type { AgentRuntime } from "./runtime.ts";

/** The repository and tag enrollment builds from images/rtunnel when --image is not given (plus the platform). */
export const DEFAULT_IMAGE = "rtunnel/rtunnel:latest";
export const AGENT_CONTEXT = path.join(repoRoot, "images", "rtunnel");

/** The default agent image for a platform: rtunnel/rtunnel:latest-arm64. */
export const defaultImage = (platform: string): string => platformTag(DEFAULT_IMAGE, platform);

/** The agent's build context, with its base replaced by `base` when given. */
export const agentContext = (base?: string): Promise<BuildContext> => buildContext(AGENT_CONTEXT, base);

export interface LocalImage {
  id: string;
  /** uncompressed size as the engine counts it */
  size: number;
  /** linux/arm64, linux/arm (no variant on some engines) */
  platform: string;
}

const noDocker = () => {
  throw new ExitError(EXIT.usage, "the docker command is not installed on this machine: enrollment builds and sends the agent image from here (or pass --build-on device)");
};
const docker = (args: string[], o: { timeoutMs?: number; input?: Buffer } = {}) => run("docker", args, { ...o, check: false }).catch(noDocker);

/** The image as this machine's engine has it, or undefined. */
export async function inspectLocal(image: string): Promise<LocalImage | undefined> {
  // JSON, not a template of fields: an image without a variant has no Variant key, and a
  // template naming it fails ("map has no entry for key").
  const r = await docker(["image", "inspect", "--format", "{{json .}}", image]);
  if (r.code !== 0) return undefined;
  const j = JSON.parse(r.stdout) as { Id: string; Size: number; Os: string; Architecture: string; Variant?: string };
  return { id: j.Id, size: j.Size, platform: `${j.Os}/${j.Architecture}${j.Variant ? `/${j.Variant}` : ""}` };
}

/** Whether an image's recorded platform is `platform` (an engine without variants says linux/arm for every ARM variant). */
export function samePlatform(recorded: string, platform: string): boolean {
  const want = platformInfo(platform)?.platform;
  if (recorded === "linux/arm") return want?.startsWith("linux/arm/") ?? false;
  return platformInfo(recorded)?.platform === want;
}

/**
 * Why this machine's Docker can't build for `platform`, or undefined: asked of the engine
 * itself (a probe container of that platform, lib/docker/platformProbe.ts), since on Docker
 * Desktop the host's binfmt is not the engine's. Loads and removes a tiny probe image.
 */
export async function crossBuildProblem(platform: string): Promise<string | undefined> {
  const native = await enginePlatform().catch(noDocker);
  if (samePlatform(native, platform)) return undefined;
  const probe = await engineRuns(platform).catch(noDocker);
  if (probe.ok) return undefined;
  const arch = platformInfo(platform)?.tag ?? platform;
  const binfmt = arch === "arm64" ? "arm64" : arch === "amd64" ? "amd64" : "arm";
  return `this machine's Docker (${native}) cannot run ${platform} programs (${probe.detail}), so it cannot build the agent image for the device: ` +
    `on Linux install QEMU's handlers (Debian/Ubuntu: sudo apt-get install qemu-user-static binfmt-support; elsewhere: docker run --privileged --rm tonistiigi/binfmt --install ${binfmt}); ` +
    `on Docker Desktop run docker run --privileged --rm tonistiigi/binfmt --install ${binfmt} (its VM keeps them until it restarts); ` +
    `or build on the device itself with --build-on device`;
}

/** Builds the agent image here from `context` for `platform`, labelled with the context's hash. */
export async function buildLocal(image: string, platform: string, context: BuildContext, log: (l: string) => void): Promise<LocalImage> {
  const native = await enginePlatform().catch(noDocker);
  const emulated = !samePlatform(native, platform);
  const builder = await detectBuilder().catch(noDocker);
  log(`building ${image} for ${platform} from ${AGENT_CONTEXT} with ${builder === "buildx" ? "docker buildx" : "the classic builder (no buildx here)"}${emulated ? ` under this machine's emulation of ${platform}: minutes, not seconds` : ""}`);
  const r = await buildFromTar(context.tar, { tag: image, platform, labels: { [CONTEXT_LABEL]: context.hash } }).catch(noDocker);
  if (r.code !== 0) {
    throw new ExitError(EXIT.usage, `can't build ${image} for ${platform}: ${r.stderr.trim().split("\n").pop() ?? ""} (another architecture needs QEMU for the build, or --build-on device, or --image)`);
  }
  const found = await inspectLocal(image);
  if (!found) throw new ExitError(EXIT.usage, `docker build made no image ${image}`);
  return found;
}

export interface Sent {
  /** bytes that left this machine (compressed) */
  wireBytes: number;
  /** bytes of the `docker save` stream before compression */
  rawBytes: number;
  ms: number;
}

/** `docker save IMAGE | gzip` into the runtime's image install, with a progress bar on stderr. */
export async function sendImage(runtime: AgentRuntime, image: string, estimate: number, progress: boolean): Promise<Sent> {
  const started = Date.now();
  const save = spawnProcess("docker", ["save", image]);
  const saveErr: Buffer[] = [];
  save.stderr.on("data", (b: Buffer) => saveErr.push(b));
  const saved = new Promise<number>((resolve) => save.on("close", (c) => resolve(c ?? 1)));
  const bar = progress
    ? new cliProgress.SingleBar(
        { stream: process.stderr, format: "  image  [{bar}] {percentage}% {value_mb}/{total_mb} MB saved, {wire_mb} MB sent", noTTYOutput: !process.stderr.isTTY, notTTYSchedule: 2000, hideCursor: true },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const mb = (n: number) => (n / 1e6).toFixed(1);
  let raw = 0;
  let wire = 0;
  // The image's size is an estimate of the `docker save` stream (tar headers add a little):
  // the total grows with the stream rather than showing more than 100%.
  let total = estimate;
  bar?.start(total, 0, { value_mb: mb(0), total_mb: mb(total), wire_mb: mb(0) });
  save.stdout.on("data", (b: Buffer) => {
    raw += b.length;
    if (raw > total) {
      total = raw;
      bar?.setTotal(total);
    }
    bar?.update(raw, { value_mb: mb(raw), total_mb: mb(total), wire_mb: mb(wire) });
  });
  try {
    await runtime.installImage(save.stdout.pipe(createGzip({ level: 6 })), (n) => {
      wire += n;
    });
  } finally {
    bar?.stop();
  }
  if ((await saved) !== 0) throw new ExitError(EXIT.usage, `docker save ${image} failed: ${Buffer.concat(saveErr).toString().trim()}`);
  return { wireBytes: wire, rawBytes: raw, ms: Date.now() - started };
}
