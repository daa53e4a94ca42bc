// `docker build` of a context tar on stdin, with whichever builder this machine's Docker has.
// Docker Desktop (and a Linux Docker with the buildx plugin) builds with BuildKit through
// buildx: `--load` puts the result in the engine's image store, where `docker save` and the
// device's `docker load` find it. Debian's docker.io 20.10 has no buildx: the classic builder
// (`DOCKER_BUILDKIT=0`, which would otherwise be asked for BuildKit by an inherited
// environment) builds for another platform too once a base of that platform is present.
import { docker } from "./docker.ts";

export type Builder = "buildx" | "classic";

export interface BuildRequest {
  tag: string;
  platform: string;
  labels?: Record<string, string>;
  /** the build's RUN steps use the host's network (a device engine without a bridge has no other) */
  hostNetwork?: boolean;
}

/** The argv (after `docker`) and extra environment of a build of the context on stdin. */
export function buildCommand(builder: Builder, r: BuildRequest): { args: string[]; env: Record<string, string> } {
  const labels = Object.entries(r.labels ?? {}).flatMap(([k, v]) => ["--label", `${k}=${v}`]);
  const common = ["--platform", r.platform, ...labels, ...(r.hostNetwork ? ["--network", "host"] : []), "--tag", r.tag, "-"];
  return builder === "buildx"
    ? { args: ["buildx", "build", "--load", "--quiet", ...common], env: {} }
    : { args: ["build", "--quiet", ...common], env: { DOCKER_BUILDKIT: "0" } };
}

let detected: Promise<Builder> | undefined;

/** buildx when the Docker client has it (`docker buildx version` answers), else the classic builder. */
export function detectBuilder(): Promise<Builder> {
  detected ??= docker(["buildx", "version"], { check: false, timeoutMs: 60_000 }).then(
    (r) => (r.code === 0 ? "buildx" : "classic"),
    () => "classic" as const,
  );
  return detected;
}

/** Builds the context tar for `r.platform` with this machine's builder; returns the builder used. */
export async function buildFromTar(context: Buffer, r: BuildRequest, o: { timeoutMs?: number } = {}): Promise<{ builder: Builder; code: number; stderr: string }> {
  const builder = await detectBuilder();
  const { args, env } = buildCommand(builder, r);
  const res = await docker(args, { input: context, check: false, timeoutMs: o.timeoutMs ?? 60 * 60_000, env: { ...process.env, ...env } });
  return { builder, code: res.code, stderr: res.stderr };
}
