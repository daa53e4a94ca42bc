// The agent image on the laptop's side: built from images/rtunnel for the device's platform
// (or a given one used as it is), and sent to the device as a gzip-compressed `docker save`
// stream over the SSH channel, with a progress bar. `docker load` reads gzip in every Docker
// a device is likely to run (Debian 12 and Raspberry Pi OS 12 ship 20.10).
import path from "node:path";
import { createGzip } from "node:zlib";
import cliProgress from "cli-progress";
import { repoRoot } from "../../lib/paths.ts";
import { run, spawnProcess } from "../../lib/proc.ts";
import { ExitError, EXIT } from "../errors.ts";
import type { AgentRuntime } from "./runtime.ts";

/** The agent image enrollment builds from images/rtunnel when --image is not given. */
export const DEFAULT_IMAGE = "rtunnel/rtunnel:latest";
export const AGENT_CONTEXT = path.join(repoRoot, "images", "rtunnel");

export interface LocalImage {
  id: string;
  /** uncompressed size as the engine counts it */
  size: number;
}

const docker = (args: string[], timeoutMs?: number) =>
  run("docker", args, { timeoutMs, check: false }).catch(() => {
    throw new ExitError(EXIT.usage, "the docker command is not installed on this machine: enrollment builds and sends the agent image from here");
  });

/** The image to send: built from images/rtunnel when `build` (no --image), or when it is missing here or built for another platform. */
export async function localImage(image: string, platform: string, log: (l: string) => void, build: boolean): Promise<LocalImage> {
  const inspect = async () => {
    const r = await docker(["image", "inspect", "--format", "{{.Id}} {{.Size}} {{.Os}}/{{.Architecture}}", image]);
    if (r.code !== 0) return undefined;
    const [id = "", size = "0", plat = ""] = r.stdout.trim().split(" ");
    return { id, size: Number(size), platform: plat };
  };
  // Docker 20.10's inspect has no Variant: linux/arm stands for arm/v7 and arm/v6 alike.
  const same = (a: string) => a === platform || (a === "linux/arm" && platform.startsWith("linux/arm/"));
  let found = build ? undefined : await inspect();
  if (!found || !same(found.platform)) {
    log(`building ${image} for ${platform} from ${AGENT_CONTEXT}`);
    const r = await docker(["build", "--platform", platform, "--tag", image, AGENT_CONTEXT], 30 * 60_000);
    if (r.code !== 0) {
      throw new ExitError(EXIT.usage, `can't build ${image} for ${platform}: ${r.stderr.trim().split("\n").pop() ?? ""} (another architecture needs docker buildx with QEMU, or pass --image)`);
    }
    found = await inspect();
    if (!found) throw new ExitError(EXIT.usage, `docker build made no image ${image}`);
  }
  return { id: found.id, size: found.size };
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
