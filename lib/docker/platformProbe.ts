// Whether a Docker engine can run a platform's programs, asked of the engine itself: a tiny
// image of that platform (one static program that prints "ok", lib/platform.ts) is loaded,
// run and removed. Reading /proc/sys/fs/binfmt_misc would only describe this machine's
// kernel; on Docker Desktop the engine runs in a VM with its own handlers, and a remote
// engine (DOCKER_HOST) is elsewhere altogether. Needs no registry and no base image.
import { randomBytes } from "node:crypto";
import { platformInfo, probeProgram } from "../platform.ts";
import { docker } from "./docker.ts";
import { loadSmallImage } from "./archive.ts";

export interface ProbeResult {
  ok: boolean;
  /** the engine's answer when it could not: its last error line */
  detail: string;
}

/** The platform the engine runs natively, `linux/amd64` (`docker version`'s Server.Os/Arch). */
export async function enginePlatform(): Promise<string> {
  const r = await docker(["version", "--format", "{{.Server.Os}}/{{.Server.Arch}}"], { timeoutMs: 60_000 });
  return platformInfo(r.stdout.trim())?.platform ?? r.stdout.trim();
}

/** Runs the probe program of `platform` in a container; leaves no image behind. */
export async function engineRuns(platform: string): Promise<ProbeResult> {
  const p = platformInfo(platform);
  if (!p) return { ok: false, detail: `no probe for ${platform}` };
  // A tag of its own per call: two enrollments at once never remove each other's probe.
  const tag = `rtunnel/platform-probe:${p.tag}-${randomBytes(4).toString("hex")}`;
  await loadSmallImage({
    tag, platform: p, files: [{ name: "probe", data: probeProgram(platform), mode: 0o755 }],
    config: { Entrypoint: ["/probe"] }, createdBy: "rtunnel platform probe",
  });
  try {
    const r = await docker(["run", "--rm", "--network", "none", "--platform", p.platform, tag], { check: false, timeoutMs: 120_000 });
    if (r.code === 0 && r.stdout === "ok\n") return { ok: true, detail: "" };
    return { ok: false, detail: (r.stderr.trim() || r.stdout.trim()).split("\n").pop() ?? `exit ${r.code}` };
  } finally {
    await docker(["image", "rm", "--force", tag], { check: false });
  }
}
