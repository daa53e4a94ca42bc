// The platform facts (lib/platform.ts) and the pure parts built on them: the agent's tag per
// platform, the image config of a base made without a registry, the builder's argv, the build
// context with its base replaced, and QEMU's binfmt entries.
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { PLATFORMS, platformInfo, platformOfMachine, platformTag, probeProgram } from "../lib/platform.ts";
import { imageArchiveParts } from "../lib/docker/archive.ts";
import { baseImageTag, baseTarball } from "../lib/docker/baseImage.ts";
import { buildCommand } from "../lib/docker/build.ts";
import { buildContext, rebase } from "../lib/docker/context.ts";
import { parseBinfmtEntry, registerLine } from "../lib/docker/emulation.ts";
import { tarArchive } from "../lib/tar.ts";
import { defaultImage } from "../provision/device/image.ts";
import { samePlatform } from "../provision/device/image.ts";

test("Docker's spellings of a platform name one platform, and uname -m names the one the agent is built for", (t) => {
  for (const [alias, p] of [["linux/aarch64", "linux/arm64"], ["linux/arm64/v8", "linux/arm64"], ["linux/arm", "linux/arm/v7"], ["LINUX/AMD64", "linux/amd64"], ["linux/armel", "linux/arm/v5"]]) {
    t.is(platformInfo(alias!)?.platform, p, alias);
  }
  t.is(platformInfo("linux/arm/v6"), undefined, "Debian publishes nothing for arm/v6");
  for (const p of Object.values(PLATFORMS)) t.is(platformOfMachine(p.uname), p.platform, p.uname);
  t.is(platformOfMachine("armv6l"), "linux/arm/v5");
  t.is(platformOfMachine("armv8l"), "linux/arm/v7");
});

test("the agent's tag names its platform (the classic image store keeps one platform per tag)", (t) => {
  t.is(defaultImage("linux/arm64"), "rtunnel/rtunnel:latest-arm64");
  t.is(defaultImage("linux/arm/v7"), "rtunnel/rtunnel:latest-armv7");
  t.is(platformTag("registry.example.com:5000/me/rtunnel", "linux/amd64"), "registry.example.com:5000/me/rtunnel:latest-amd64");
  t.is(platformTag("me/rtunnel:v2", "linux/arm/v5"), "me/rtunnel:v2-armv5");
  t.throws(() => platformTag("x", "linux/s390x"), { instanceOf: RangeError });
  t.true(samePlatform("linux/arm", "linux/arm/v7"), "Docker 20.10's inspect has no variant");
  t.true(samePlatform("linux/arm64/v8", "linux/arm64"));
  t.false(samePlatform("linux/amd64", "linux/arm64"));
});

test("the bed's bases: debian:trixie-slim is this engine's own, another platform's has a tag and a cached tarball of its own", (t) => {
  t.is(baseImageTag(), "debian:trixie-slim");
  t.is(baseImageTag("linux/arm64"), "rtunnel/debian:trixie-slim-arm64");
  t.is(baseImageTag("linux/arm/v7"), "rtunnel/debian:trixie-slim-armv7");
  t.is(path.basename(baseTarball("/c")), "debian-trixie-minbase.tar.gz");
  t.is(path.basename(baseTarball("/c", "linux/arm64")), "debian-trixie-minbase-arm64.tar.gz");
  t.is(path.basename(baseTarball("/c", "linux/arm/v7")), "debian-trixie-minbase-armhf.tar.gz");
});

test("a base made without a registry records its architecture and variant in its image config (docker import --platform would say amd64)", (t) => {
  for (const [platform, arch, variant] of [["linux/arm64", "arm64", "v8"], ["linux/arm/v7", "arm", "v7"], ["linux/amd64", "amd64", undefined]] as const) {
    const parts = imageArchiveParts({ tag: "x:y", platform: platformInfo(platform)!, diffIds: ["ab".repeat(32)], config: { Cmd: ["bash"] }, createdBy: "test" });
    const manifest = JSON.parse(String(parts.files[0]!.data)) as [{ Config: string; Layers: string[] }];
    const config = JSON.parse(String(parts.files.find((f) => f.name === manifest[0].Config)!.data)) as Record<string, unknown>;
    t.is(config.architecture, arch, platform);
    t.is(config.variant, variant, platform);
    t.is(config.os, "linux");
    t.deepEqual(manifest[0].Layers, parts.layerPaths);
  }
});

test("the builder: buildx with --load when the client has it, else the classic builder asked for explicitly", (t) => {
  const r = { tag: "rtunnel/rtunnel:latest-arm64", platform: "linux/arm64", labels: { "rtunnel.context": "sha256:1" } };
  t.deepEqual(buildCommand("buildx", r), { args: ["buildx", "build", "--load", "--quiet", "--platform", "linux/arm64", "--label", "rtunnel.context=sha256:1", "--tag", r.tag, "-"], env: {} });
  t.deepEqual(buildCommand("classic", r), { args: ["build", "--quiet", "--platform", "linux/arm64", "--label", "rtunnel.context=sha256:1", "--tag", r.tag, "-"], env: { DOCKER_BUILDKIT: "0" } });
});

test("--base-image replaces the Dockerfile's FROM debian:trixie-slim in the context only, and the context's hash names its bytes", async (t) => {
  t.is(rebase("FROM debian:trixie-slim\nRUN true\n", "mirror.example.com/library/debian:trixie-slim"), "FROM mirror.example.com/library/debian:trixie-slim\nRUN true\n");
  t.is(rebase("from --platform=linux/arm64 debian:trixie-slim AS b\n", "x/y:z"), "from x/y:z AS b\n");
  t.throws(() => rebase("FROM alpine\n", "x/y:z"), { message: /no "FROM debian:trixie-slim" line/ });
  t.throws(() => rebase("FROM debian:trixie-slim\n", "x y"), { instanceOf: RangeError });
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-context-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, "Dockerfile"), "FROM debian:trixie-slim\n");
  await writeFile(path.join(dir, "agent"), "#!/bin/sh\n", { mode: 0o755 });
  await writeFile(path.join(dir, "README.md"), "not built\n");
  const [a, b, c] = [await buildContext(dir), await buildContext(dir), await buildContext(dir, "x/y:z")];
  t.is(a.hash, b.hash);
  t.not(a.hash, c.hash);
  const listed = execFileSync("tar", ["-tvf", "-"], { input: c.tar }).toString();
  t.regex(listed, /^-rwxr-xr-x root\/root .* agent$/m);
  t.notRegex(listed, /README/);
  t.is(execFileSync("tar", ["-xOf", "-", "Dockerfile"], { input: c.tar }).toString(), "FROM x/y:z\n");
  t.deepEqual(tarArchive([{ name: "a", data: "1" }]), tarArchive([{ name: "a", data: "1" }]));
});

test("a binfmt entry re-registered with more flags keeps its interpreter, magic and mask", (t) => {
  const e = parseBinfmtEntry("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c46\nmask ffffff00\n");
  t.deepEqual(e, { enabled: true, interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", flags: "PF", offset: "0", magic: "7f454c46", mask: "ffffff00" });
  t.is(registerLine("qemu-aarch64", e, "POCF"), ":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46:\\xff\\xff\\xff\\x00:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:POCF");
});

test("the engine probe's programs are ELF executables of their architecture", (t) => {
  for (const [platform, cls, machine] of [["linux/amd64", 2, 62], ["linux/arm64", 2, 183], ["linux/arm/v7", 1, 40]] as const) {
    const elf = probeProgram(platform);
    t.is(elf.subarray(0, 4).toString("latin1"), "\x7fELF", platform);
    t.is(elf[4], cls, platform);
    t.is(elf.readUInt16LE(18), machine, platform);
  }
});
