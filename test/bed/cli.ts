// `npm run testbed -- prepare|prepare-emulated|fresh-base|sweep|check`: the test bed's steps
// by hand (CI prepares once up front so the first test's timeout doesn't include a
// debootstrap, builds a base from nothing once per run, and sweeps at the end).
// prepare-emulated is the emulated tests' part: QEMU's binfmt entries (a change to the whole
// machine, said when made), the ARM bases (debootstrap under QEMU on a new machine, then
// cached) and the ARM device images, both platforms at once.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { buildImage, docker, ensureBaseImage, ensureEngine, leftovers, sweepAll, waitFor } from "./index.ts";
import { baseImageTag, imageProblem } from "../../lib/docker/baseImage.ts";
import { ensureEmulation } from "../../lib/docker/emulation.ts";
import { deviceVariant } from "../../lib/fixtures/device.ts";

const usage = "usage: npm run testbed -- prepare | prepare-emulated [PLATFORM...] | fresh-base | sweep | check";
/** The platforms the emulated tests run (test/pi-*.emulated.docker.test.ts). */
const EMULATED = ["linux/arm64", "linux/arm/v7"];
const say = (line: string) => console.error(`testbed: ${line}`);

async function main(command: string | undefined, args: readonly string[]): Promise<void> {
  switch (command) {
    case "prepare": {
      await ensureEngine();
      say(`base image debian:trixie-slim: ${await ensureBaseImage({ log: say })}`);
      for (const name of ["rtunneld", "rtunnel", "host", "device", "relay-client", "relay-host"]) {
        const started = Date.now();
        say(`built ${await buildImage(name)} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      }
      // The OpenSSH 9.2 device of the device sshd tests: its own base, then the device image on it.
      say(`base image debian:bookworm-slim: ${await ensureBaseImage({ suite: "bookworm", log: say })}`);
      const started = Date.now();
      say(`built ${await buildImage("device", { variant: deviceVariant("bookworm") })} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return;
    }
    case "prepare-emulated": {
      await ensureEngine();
      const platforms = args.length ? args : EMULATED;
      for (const p of platforms) if (!EMULATED.includes(p)) throw new Error(`prepare-emulated takes ${EMULATED.join(", ")} (got ${p})`);
      await Promise.all(platforms.map(async (platform) => {
        const started = Date.now();
        const log = (l: string) => say(`${platform}: ${l}`);
        await ensureEmulation(platform, { credentials: true, log }); // sudo on the devices needs C
        log(`base image ${baseImageTag(platform)}: ${await ensureBaseImage({ platform, log })} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
        const built = Date.now();
        log(`built ${await buildImage("device-arm", { platform, log })} in ${((Date.now() - built) / 1000).toFixed(0)} s`);
      }));
      return;
    }
    case "fresh-base": {
      // What a new machine does: debootstrap from an empty cache, import, check. Under a tag
      // of its own, so other runs on this engine keep building on debian:trixie-slim.
      await ensureEngine();
      const cache = await mkdtemp(path.join(os.tmpdir(), "rtunnel-fresh-cache-"));
      const tag = `rtunnel/base-check:${process.pid}`;
      const started = Date.now();
      try {
        const outcome = await ensureBaseImage({ tag, cache, noPull: true, log: say });
        if (outcome !== "built") throw new Error(`expected a build from an empty cache, got ${outcome}`);
        const problem = await imageProblem(tag);
        if (problem) throw new Error(`the freshly built base is bad: ${problem}`);
        say(`a base built from an empty cache in ${((Date.now() - started) / 1000).toFixed(0)} s has a 0755 root`);
      } finally {
        await docker(["image", "rm", "--force", tag], { check: false });
        await rm(cache, { recursive: true, force: true });
      }
      return;
    }
    case "check": {
      // After a run: each test process's watchdog removes what a killed process left, within
      // a second or two of its death; what remains after that was really left behind.
      const count = async () => Object.values(await leftovers()).flat().length;
      await waitFor("the watchdogs to finish", async () => (await count()) === 0, { tries: 20, intervalMs: 500 }).catch(() => undefined);
      const left = await leftovers();
      const n = Object.values(left).flat().length;
      if (n) {
        console.error(`left behind: ${JSON.stringify(left)}`);
        await sweepAll();
        throw new Error(`the tests left ${n} containers, networks or volumes behind (now removed)`);
      }
      console.error("nothing left behind");
      return;
    }
    case "sweep":
      console.error(`removed ${await sweepAll()} leftover test resources`);
      return;
    default:
      console.error(usage);
      process.exitCode = 2;
  }
}

main(process.argv[2], process.argv.slice(3)).catch((e: unknown) => {
  console.error(`testbed: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
