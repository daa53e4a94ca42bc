// The Dockerfiles say `FROM debian:trixie-slim` (a device fixture also `FROM
// debian:bookworm-slim`, for OpenSSH 9.2), exactly what a user builds with Docker Hub. Where no
// registry answers (these CI machines), the same tag is built locally from Debian's own
// packages with debootstrap, one tarball per suite, cached so later runs take seconds.
//
// Nothing already on the machine counts as good until it is checked: an image or cached
// tarball whose root directory is not 0755 (what an older version of this file made) is
// thrown away and rebuilt, so a machine that holds one heals by itself.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { run } from "../proc.ts";
import { docker } from "./docker.ts";
import { ensureCommand } from "./engine.ts";
import { withLock } from "./lock.ts";
import { cacheDir } from "../paths.ts";
import { firstTarEntry, packRootfs, rootEntryProblem } from "./rootfs.ts";

/** The Debian suite every image is built on. */
export const BASE_SUITE = "trixie";
export const BASE_IMAGE = baseImageTag(BASE_SUITE);

/** A Debian suite name (trixie, bookworm): it becomes part of a tag and a file name. */
function checkedSuite(suite: string): string {
  if (!/^[a-z][a-z0-9-]{1,30}$/.test(suite)) throw new RangeError(`a Debian suite is a lowercase name like trixie or bookworm (got ${JSON.stringify(suite)})`);
  return suite;
}

/** The slim image tag of a Debian suite, as Docker Hub names it. */
export function baseImageTag(suite: string = BASE_SUITE): string {
  return `debian:${checkedSuite(suite)}-slim`;
}

export type BaseImageOutcome = "present" | "pulled" | "imported-from-cache" | "built";

const imageId = async (tag: string) => {
  const r = await docker(["image", "inspect", "--format", "{{.Id}}", tag], { check: false });
  return r.code === 0 ? r.stdout.trim() : undefined;
};

export function baseTarball(dir = cacheDir(), suite: string = BASE_SUITE): string {
  return path.join(dir, `debian-${checkedSuite(suite)}-minbase.tar.gz`);
}

async function debootstrapTarball(target: string, suite: string): Promise<void> {
  await ensureCommand("debootstrap", "debootstrap");
  const mirror = process.env.RTUNNEL_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
  const root = await mkdtemp(path.join(os.tmpdir(), `rtunnel-${suite}-`));
  try {
    await run("debootstrap", ["--variant=minbase", suite, root, mirror], { timeoutMs: 900_000 });
    // apt lists and caches make the image bigger and are stale by the next build anyway.
    await run("sh", ["-c", 'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin', "sh", root]);
    await mkdir(path.dirname(target), { recursive: true });
    const partial = `${target}.partial-${process.pid}`;
    await packRootfs(root, partial);
    await rename(partial, target);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * Why an image would make a bad base (its first layer's root entry), or undefined. The
 * verdict is kept per image id in the cache, so each image is unpacked once per machine.
 */
export async function imageProblem(tag: string): Promise<string | undefined> {
  const id = await imageId(tag);
  if (!id) return `there is no image ${tag}`;
  const verdicts = path.join(cacheDir(), "checked-images");
  const verdictFile = path.join(verdicts, id.replace(/[^A-Za-z0-9]/g, "_"));
  const known = await readFile(verdictFile, "utf8").catch(() => undefined);
  if (known !== undefined) return known === "ok" ? undefined : known;
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-image-check-"));
  try {
    await run("sh", ["-c", 'docker save "$1" | tar -C "$2" -x', "sh", tag, dir], { timeoutMs: 300_000 });
    const manifest = JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8")) as { Layers?: string[] }[];
    const first = manifest[0]?.Layers?.[0];
    const problem = first ? rootEntryProblem(await firstTarEntry(path.join(dir, first))) : undefined;
    await mkdir(verdicts, { recursive: true });
    await writeFile(verdictFile, problem ?? "ok");
    return problem;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function checked(tag: string, how: string): Promise<void> {
  const problem = await imageProblem(tag);
  if (problem) throw new Error(`${tag} ${how} is not a usable base: ${problem}`);
}

/**
 * Whether a cached tarball can be imported: present, with a 0755 root directory (or none). A
 * bad one is deleted (and said so), so that it is built again.
 */
export async function usableCachedTarball(tarball: string, log: (line: string) => void = () => {}): Promise<boolean> {
  if (!existsSync(tarball)) return false;
  const problem = rootEntryProblem(await firstTarEntry(tarball).catch(() => undefined));
  if (!problem) return true;
  log(`cached ${tarball}: ${problem}; building it again`);
  await rm(tarball, { force: true });
  return false;
}

export interface BaseImageOptions {
  /** the Debian suite (default trixie) */
  suite?: string;
  /** the tag to make (default debian:SUITE-slim) */
  tag?: string;
  /** where the tarball is cached (default the test bed's cache) */
  cache?: string;
  /** never pull: build from Debian's packages (also RTUNNEL_NO_PULL=1) */
  noPull?: boolean;
  log?: (line: string) => void;
}

/** Makes the base image present and checked: already there, pulled, or built from the cached tarball. */
export async function ensureBaseImage(o: BaseImageOptions = {}): Promise<BaseImageOutcome> {
  const suite = checkedSuite(o.suite ?? BASE_SUITE);
  const tag = o.tag ?? baseImageTag(suite);
  const log = o.log ?? (() => {});
  const good = async () => (await imageId(tag)) !== undefined && (await imageProblem(tag)) === undefined;
  if (await good()) return "present";
  return withLock(`base-image-${tag.replace(/[^A-Za-z0-9.-]/g, "_")}`, async () => {
    if (await imageId(tag)) {
      if ((await imageProblem(tag)) === undefined) return "present";
      log(`${tag}: ${await imageProblem(tag)}; removing it and building it again`);
      await docker(["image", "rm", "--force", tag], { check: false });
    }
    if (!(o.noPull || process.env.RTUNNEL_NO_PULL)) {
      const pulled = await docker(["pull", tag], { check: false, timeoutMs: 120_000 });
      if (pulled.code === 0) {
        await checked(tag, "as pulled");
        return "pulled";
      }
    }
    const tarball = baseTarball(o.cache, suite);
    const cached = await usableCachedTarball(tarball, log);
    if (!cached) await debootstrapTarball(tarball, suite);
    await docker(["import", "--change", 'CMD ["bash"]', tarball, tag], { timeoutMs: 300_000 });
    await checked(tag, "as imported");
    return cached ? "imported-from-cache" : "built";
  });
}
