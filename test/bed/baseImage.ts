// The Dockerfiles say `FROM debian:trixie-slim`, exactly what a user builds with Docker Hub.
// Where no registry answers (these CI machines), the same tag is built locally from Debian's
// own packages with debootstrap, and the tarball is cached so later runs take seconds.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { docker, run } from "./docker.ts";
import { ensureCommand } from "./engine.ts";
import { withLock } from "./lock.ts";
import { cacheDir } from "./paths.ts";

export const BASE_IMAGE = "debian:trixie-slim";

const hasImage = async (tag: string) => (await docker(["image", "inspect", tag], { check: false })).code === 0;

export function baseTarball(): string {
  return path.join(cacheDir(), "debian-trixie-minbase.tar.gz");
}

async function debootstrapTarball(target: string): Promise<void> {
  await ensureCommand("debootstrap", "debootstrap");
  const mirror = process.env.RTUNNEL_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
  const root = await mkdtemp(path.join(os.tmpdir(), "rtunnel-trixie-"));
  try {
    await run("debootstrap", ["--variant=minbase", "trixie", root, mirror], { timeoutMs: 900_000 });
    // apt lists and caches make the image bigger and are stale by the next build anyway.
    await run("sh", ["-c", 'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin', "sh", root]);
    await mkdir(path.dirname(target), { recursive: true });
    const partial = `${target}.partial-${process.pid}`;
    await run("sh", ["-c", 'tar -C "$1" -c . | gzip -1 > "$2"', "sh", root, partial]);
    await rename(partial, target);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Makes `debian:trixie-slim` present: already there, pulled, or built from the cached tarball. */
export async function ensureBaseImage(): Promise<"present" | "pulled" | "imported-from-cache" | "built"> {
  if (await hasImage(BASE_IMAGE)) return "present";
  return withLock("base-image", async () => {
    if (await hasImage(BASE_IMAGE)) return "present";
    if (!process.env.RTUNNEL_NO_PULL) {
      const pulled = await docker(["pull", BASE_IMAGE], { check: false, timeoutMs: 120_000 });
      if (pulled.code === 0) return "pulled";
    }
    const tarball = baseTarball();
    const cached = existsSync(tarball);
    if (!cached) await debootstrapTarball(tarball);
    await docker(["import", "--change", 'CMD ["bash"]', tarball, BASE_IMAGE], { timeoutMs: 300_000 });
    return cached ? "imported-from-cache" : "built";
  });
}
