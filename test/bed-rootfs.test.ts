// The base image's root filesystem step without Docker or debootstrap: a tree made with
// mkdtemp (mode 0700, as debootstrap's target was) is packed with a 0755 root entry, and a
// tarball whose root entry is 0700 is recognised as the bad base it would make; each Debian
// suite (trixie, and bookworm for the OpenSSH 9.2 device) has its own tag and cached tarball,
// held to the same check.
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { run } from "../lib/proc.ts";
import { BASE_IMAGE, baseImageTag, baseTarball, NATIVE_PLATFORM, usableCachedTarball } from "../lib/docker/baseImage.ts";
import { firstTarEntry, packRootfs, rootEntryProblem } from "../lib/docker/rootfs.ts";

async function tree(t: { teardown: (f: () => Promise<void>) => void }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-rootfs-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const root = await mkdtemp(path.join(dir, "root-"));
  await mkdir(path.join(root, "etc"));
  await writeFile(path.join(root, "etc", "hostname"), "x\n");
  return { dir, root };
}

test("a mkdtemp tree (mode 0700) is packed with a 0755 root directory as its first entry", async (t) => {
  const { dir, root } = await tree(t);
  t.is((await stat(root)).mode & 0o777, 0o700, "the precondition: mkdtemp makes 0700");
  const tarball = path.join(dir, "rootfs.tar.gz");
  await packRootfs(root, tarball);
  const first = await firstTarEntry(tarball);
  t.deepEqual(first, { name: "./", mode: 0o755, type: "5" });
  t.is(rootEntryProblem(first), undefined);
  // tar itself agrees (the same check a person runs: tar -tzvf ... | head -1).
  const listed = (await run("sh", ["-c", 'tar -tzvf "$1" | head -1', "sh", tarball])).stdout;
  t.regex(listed, /^drwxr-xr-x .* \.\/\n$/);
});

test("a tarball whose root entry is 0700 (gzip or plain) is named as a bad base; one without a root entry is fine", async (t) => {
  const { dir, root } = await tree(t);
  const gz = path.join(dir, "bad.tar.gz");
  const plain = path.join(dir, "bad.tar");
  await run("sh", ["-c", 'tar -C "$1" -c . | gzip -1 > "$2" && tar -C "$1" -cf "$3" .', "sh", root, gz, plain]);
  for (const f of [gz, plain]) {
    const first = await firstTarEntry(f);
    t.is(first?.name, "./");
    t.regex(rootEntryProblem(first) ?? "", /root directory is mode 0700, not 0755/, f);
  }
  const noRoot = path.join(dir, "noroot.tar");
  await run("sh", ["-c", 'tar -C "$1" -cf "$2" etc', "sh", root, noRoot]);
  t.is((await firstTarEntry(noRoot))?.name, "etc/");
  t.is(rootEntryProblem(await firstTarEntry(noRoot)), undefined);
  t.is(rootEntryProblem({ name: "./", mode: 0o644, type: "0" }), 'its root entry "./" is not a directory');
});

test("each Debian suite has its own slim tag and cached tarball; trixie stays the default", (t) => {
  t.is(BASE_IMAGE, "debian:trixie-slim");
  t.is(baseImageTag(), "debian:trixie-slim");
  t.is(baseImageTag(NATIVE_PLATFORM, "bookworm"), "debian:bookworm-slim");
  t.is(baseTarball("/c"), "/c/debian-trixie-minbase.tar.gz");
  t.is(baseTarball("/c", NATIVE_PLATFORM, "bookworm"), "/c/debian-bookworm-minbase.tar.gz");
});

test("a cached tarball of any suite counts only with a 0755 root: a 0700 one is deleted (and said so), a good one kept", async (t) => {
  const { dir, root } = await tree(t);
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  for (const suite of ["trixie", "bookworm"] as const) {
    const tarball = baseTarball(dir, NATIVE_PLATFORM, suite);
    t.false(await usableCachedTarball(tarball, log), "absent");
    await chmod(root, 0o700); // as mkdtemp made it (packRootfs of the last round made it 0755)
    await run("sh", ["-c", 'tar -C "$1" -c . | gzip -1 > "$2"', "sh", root, tarball]);
    t.false(await usableCachedTarball(tarball, log), "0700 root");
    t.is(await stat(tarball).catch(() => undefined), undefined, "the bad tarball is gone");
    await packRootfs(root, tarball);
    t.true(await usableCachedTarball(tarball, log), "packed by packRootfs");
    t.true((await stat(tarball)).isFile());
  }
  t.is(lines.length, 2);
  t.regex(lines[1]!, /debian-bookworm-minbase\.tar\.gz: its root directory is mode 0700, not 0755.*; building it again$/);
});
