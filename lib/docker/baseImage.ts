// The Dockerfiles say `FROM debian:trixie-slim`, exactly what a user builds with Docker Hub.
// Where no registry answers (these CI machines), the same tag is built locally from Debian's
// own packages with debootstrap, and the tarball is cached so later runs take seconds.
//
// Bases for other platforms (the test bed's ARM devices, and the agent image built for them)
// get tags of their own, `rtunnel/debian:trixie-slim-arm64`: the classic image store keeps one
// platform per tag, so `debian:trixie-slim` stays this engine's own. They are pulled from the
// single-platform repositories (`arm64v8/debian`), or debootstrapped for the foreign
// architecture (its second stage runs under QEMU: minutes, so the tarball is cached too) and
// loaded with an image config that names the platform (lib/docker/archive.ts): Docker 20.10's
// `docker import --platform` would record amd64.
//
// Nothing already on the machine counts as good until it is checked: an image or cached
// tarball whose root directory is not 0755 (what an older version of this file made), or an
// image of another architecture, is thrown away and rebuilt, so a machine that holds one heals
// by itself.
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import { createGunzip } from "node:zlib";
import { platformInfo, type PlatformInfo } from "../platform.ts";
import { run } from "../proc.ts";
import { imageArchiveParts } from "./archive.ts";
import { docker } from "./docker.ts";
import { ensureEmulation } from "./emulation.ts";
import { ensureCommand } from "./engine.ts";
import { withLock } from "./lock.ts";
import { cacheDir } from "../paths.ts";
import { firstTarEntry, packRootfs, rootEntryProblem } from "./rootfs.ts";

export const BASE_IMAGE = "debian:trixie-slim";

/** The Debian releases the bed builds bases of: trixie for everything, bookworm (systemd 252) for the systemd device. */
export type Suite = "trixie" | "bookworm";

/** The Debian suite every image is built on (bookworm only for the OpenSSH 9.2 device and the systemd host). */
export const BASE_SUITE: Suite = "trixie";

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

export type BaseImageOutcome = "present" | "pulled" | "imported-from-cache" | "built";

/** The bed's native platform: what the local engine runs without emulation. */
export const NATIVE_PLATFORM = "linux/amd64";

/**
 * The tag of a base image: `debian:SUITE-slim` for this engine's own platform (what the
 * Dockerfiles name), `rtunnel/debian:SUITE-slim-ARCH` for another (one platform per tag).
 */
export function baseImageTag(platform = NATIVE_PLATFORM, suite: Suite = "trixie"): string {
  const p = platformInfo(platform);
  if (!p) throw new RangeError(`no base image for platform ${platform}`);
  return p.platform === NATIVE_PLATFORM ? `debian:${suite}-slim` : `rtunnel/debian:${suite}-slim-${p.tag}`;
}

/** Docker Hub's single-platform repository of Debian for a platform (no tag clash with the native one). */
function hubRepository(p: PlatformInfo): string {
  return { amd64: "amd64", arm64: "arm64v8", armv7: "arm32v7", armv5: "arm32v5" }[p.tag] ?? p.tag;
}

const imageId = async (tag: string) => {
  const r = await docker(["image", "inspect", "--format", "{{.Id}}", tag], { check: false });
  return r.code === 0 ? r.stdout.trim() : undefined;
};

export function baseTarball(dir = cacheDir(), platform = NATIVE_PLATFORM, suite: Suite = "trixie"): string {
  const p = platformInfo(platform)!;
  return path.join(dir, `debian-${suite}-minbase${p.platform === NATIVE_PLATFORM ? "" : `-${p.debian}`}.tar.gz`);
}

async function debootstrapTarball(target: string, p: PlatformInfo, suite: Suite, log: (l: string) => void): Promise<void> {
  await ensureCommand("debootstrap", "debootstrap");
  const foreign = p.platform !== NATIVE_PLATFORM;
  if (foreign) {
    await ensureEmulation(p.platform, { log });
    log(`debootstrap ${suite} for ${p.debian}: its second stage runs under QEMU (minutes; cached in ${target})`);
  }
  const mirror = process.env.RTUNNEL_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
  const root = await mkdtemp(path.join(os.tmpdir(), `rtunnel-${suite}-${p.debian}-`));
  try {
    await run("debootstrap", ["--variant=minbase", ...(foreign ? [`--arch=${p.debian}`] : []), suite, root, mirror], { timeoutMs: 1_800_000 });
    // apt lists and caches make the image bigger and are stale by the next build anyway.
    await run("sh", ["-c", 'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb', "sh", root]);
    await mkdir(path.dirname(target), { recursive: true });
    const partial = `${target}.partial-${process.pid}`;
    await packRootfs(root, partial);
    await rename(partial, target);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Loads a rootfs tarball as a one-layer image whose config names its platform. */
async function loadForeignBase(tarball: string, tag: string, p: PlatformInfo): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-base-archive-"));
  try {
    const hash = createHash("sha256");
    const layer = path.join(dir, "layer.tar");
    await pipeline(createReadStream(tarball), createGunzip(), new Transform({ transform(c: Buffer, _e, done) { hash.update(c); done(null, c); } }), createWriteStream(layer));
    const diffId = hash.digest("hex");
    const parts = imageArchiveParts({ tag, platform: p, diffIds: [diffId], config: { Cmd: ["bash"] }, createdBy: `debootstrap --variant=minbase --arch=${p.debian} (rtunnel test bed)` });
    for (const f of parts.files) await writeFile(path.join(dir, f.name), f.data);
    await mkdir(path.join(dir, diffId));
    await rename(layer, path.join(dir, parts.layerPaths[0]!));
    await run("sh", ["-c", 'cd "$1" && shift && tar -c "$@" | docker load --quiet', "sh", dir, ...parts.files.map((f) => f.name), parts.layerPaths[0]!], { timeoutMs: 600_000 });
  } finally {
    await rm(dir, { recursive: true, force: true });
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

/** Why an image is not a base for `platform`: its root entry, or another architecture. */
async function baseProblem(tag: string, p: PlatformInfo): Promise<string | undefined> {
  const problem = await imageProblem(tag);
  if (problem) return problem;
  const arch = (await docker(["image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", tag], { check: false })).stdout.trim();
  if (arch !== `linux/${p.arch}`) return `it is a ${arch} image, not ${p.platform}`;
  return undefined;
}

export interface BaseImageOptions {
  /** the tag to make (default baseImageTag(platform, suite)) */
  tag?: string;
  /** default the bed's native platform */
  platform?: string;
  /** default trixie */
  suite?: Suite;
  /** where the tarball is cached (default the test bed's cache) */
  cache?: string;
  /** never pull: build from Debian's packages (also RTUNNEL_NO_PULL=1) */
  noPull?: boolean;
  log?: (line: string) => void;
}

/** Makes the base image present and checked: already there, pulled, or built from the cached tarball. */
export async function ensureBaseImage(o: BaseImageOptions = {}): Promise<BaseImageOutcome> {
  const p = platformInfo(o.platform ?? NATIVE_PLATFORM);
  if (!p) throw new RangeError(`no base image for platform ${o.platform}`);
  const suite = o.suite ?? "trixie";
  const tag = o.tag ?? baseImageTag(p.platform, suite);
  const foreign = p.platform !== NATIVE_PLATFORM;
  const log = o.log ?? (() => {});
  const good = async () => (await imageId(tag)) !== undefined && (await baseProblem(tag, p)) === undefined;
  if (await good()) return "present";
  return withLock(`base-image-${tag.replace(/[^A-Za-z0-9.-]/g, "_")}`, async () => {
    if (await imageId(tag)) {
      const problem = await baseProblem(tag, p);
      if (problem === undefined) return "present";
      log(`${tag}: ${problem}; removing it and building it again`);
      await docker(["image", "rm", "--force", tag], { check: false });
    }
    if (!(o.noPull || process.env.RTUNNEL_NO_PULL)) {
      const from = foreign ? `${hubRepository(p)}/debian:${suite}-slim` : tag;
      const pulled = await docker(["pull", from], { check: false, timeoutMs: 120_000 });
      if (pulled.code === 0) {
        if (from !== tag) await docker(["tag", from, tag]);
        const problem = await baseProblem(tag, p);
        if (problem) throw new Error(`${tag} as pulled (${from}) is not a usable base: ${problem}`);
        return "pulled";
      }
    }
    const tarball = baseTarball(o.cache, p.platform, suite);
    const cached = await usableCachedTarball(tarball, log);
    if (!cached) await debootstrapTarball(tarball, p, suite, log);
    if (foreign) await loadForeignBase(tarball, tag, p);
    else await docker(["import", "--change", 'CMD ["bash"]', tarball, tag], { timeoutMs: 300_000 });
    const problem = await baseProblem(tag, p);
    if (problem) throw new Error(`${tag} as imported is not a usable base: ${problem}`);
    return cached ? "imported-from-cache" : "built";
  });
}
