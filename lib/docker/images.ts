// Builds the project's images (images/NAME) and the fixtures' (lib/fixtures/images/NAME) from
// their Dockerfiles, once per process and never twice at the same time across processes.
// For another platform (the bed's emulated ARM devices) the image is built under QEMU on the
// bed's base of that platform, named in place of the Dockerfile's own `FROM debian:trixie-slim`
// (lib/docker/context.ts), and tagged with the platform: one platform per tag.
import { existsSync } from "node:fs";
import path from "node:path";
import { platformInfo, platformTag } from "../platform.ts";
import { baseImageTag, ensureBaseImage, NATIVE_PLATFORM } from "./baseImage.ts";
import { buildFromTar } from "./build.ts";
import { buildContext } from "./context.ts";
import { docker } from "./docker.ts";
import { ensureEmulation } from "./emulation.ts";
import { withLock } from "./lock.ts";
import { repoRoot } from "../paths.ts";

export type ProjectImage = "rtunneld" | "rtunnel";

const built = new Map<string, Promise<string>>();

export function contextDir(name: string): string {
  const project = path.join(repoRoot, "images", name);
  if (existsSync(path.join(project, "Dockerfile"))) return project;
  const fixture = path.join(repoRoot, "lib", "fixtures", "images", name);
  if (existsSync(path.join(fixture, "Dockerfile"))) return fixture;
  throw new Error(`no Dockerfile for image "${name}" in images/${name} or lib/fixtures/images/${name}`);
}

/**
 * The tag the fixtures build an image under. RTUNNEL_IMAGE_TAG gives checkouts that share one
 * engine (git worktrees, several CI jobs on one machine) tags of their own, so one's build
 * never replaces the image another's tests are running.
 */
export function imageTag(name: string): string {
  const tag = process.env.RTUNNEL_IMAGE_TAG ?? "test";
  if (!/^[a-z0-9][a-z0-9._-]{0,40}$/.test(tag)) throw new Error(`RTUNNEL_IMAGE_TAG must be a docker tag of a-z, 0-9, . _ - (got ${JSON.stringify(tag)})`);
  return `rtunnel/${name}:${tag}`;
}

/** One Dockerfile built with other build arguments, under a name of its own (`NAME-SUFFIX`). */
export interface ImageVariant {
  suffix: string;
  buildArgs: Readonly<Record<string, string>>;
}

export interface BuildOptions {
  /** another platform than the bed's own: built under QEMU on the bed's base of that platform */
  platform?: string;
  /** the same Dockerfile with other build arguments (the bed's own platform only) */
  variant?: ImageVariant;
  log?: (line: string) => void;
}

/** Builds images/NAME (or lib/fixtures/images/NAME) and returns its tag. Docker's cache makes repeats cheap. */
export function buildImage(name: ProjectImage | string, o: BuildOptions = {}): Promise<string> {
  const p = o.platform === undefined ? undefined : platformInfo(o.platform);
  if (o.platform !== undefined && !p) throw new RangeError(`buildImage: no platform ${o.platform}`);
  if (p && p.platform !== NATIVE_PLATFORM) {
    if (o.variant) throw new RangeError(`buildImage: a variant is for the bed's own platform only (${name} for ${p.platform})`);
    return buildForeign(name, p.platform, o.log ?? (() => {}));
  }
  const variant = o.variant;
  const as = variant ? `${name}-${variant.suffix}` : name;
  let pending = built.get(as);
  if (!pending) {
    pending = withLock(`build-${as}`, async () => {
      const tag = imageTag(as);
      const args = Object.entries(variant?.buildArgs ?? {}).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]);
      await docker(["build", "--quiet", ...args, "--tag", tag, contextDir(name)], {
        timeoutMs: 20 * 60_000,
        // The legacy builder needs no buildx plugin, which the Debian client lacks.
        env: { ...process.env, DOCKER_BUILDKIT: process.env.DOCKER_BUILDKIT ?? "0" },
      });
      return tag;
    });
    pending.catch(() => built.delete(as));
    built.set(as, pending);
  }
  return pending;
}

function buildForeign(name: string, platform: string, log: (line: string) => void): Promise<string> {
  const key = `${name}@${platform}`;
  let pending = built.get(key);
  if (!pending) {
    pending = withLock(`build-${name}-${platformInfo(platform)!.tag}`, async () => {
      // C too: the emulated devices run sudo, a setuid program.
      await ensureEmulation(platform, { credentials: true, log });
      const base = baseImageTag(platform);
      await ensureBaseImage({ platform, log });
      const tag = platformTag(imageTag(name), platform);
      const context = await buildContext(contextDir(name), base);
      const r = await buildFromTar(context.tar, { tag, platform }, { timeoutMs: 60 * 60_000 });
      if (r.code !== 0) throw new Error(`building ${tag} for ${platform} failed: ${r.stderr.trim().split("\n").slice(-5).join("\n")}`);
      return tag;
    });
    pending.catch(() => built.delete(key));
    built.set(key, pending);
  }
  return pending;
}
