// Builds the project's images (images/NAME) and the fixtures' (lib/fixtures/images/NAME) from
// their Dockerfiles, once per process and never twice at the same time across processes.
import { existsSync } from "node:fs";
import path from "node:path";
import { docker } from "./docker.ts";
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

/** Builds images/NAME (or lib/fixtures/images/NAME) and returns its tag. Docker's cache makes repeats cheap. */
export function buildImage(name: ProjectImage | string, variant?: ImageVariant): Promise<string> {
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
