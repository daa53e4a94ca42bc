// `npm run testbed -- prepare|sweep`: the test bed's steps by hand (CI prepares once up front
// so the first test's timeout doesn't include a debootstrap, and sweeps at the end).
import { buildImage, ensureBaseImage, ensureEngine, leftovers, sweepAll, waitFor } from "./index.ts";

const usage = "usage: npm run testbed -- prepare | sweep | check";

async function main(command: string | undefined): Promise<void> {
  switch (command) {
    case "prepare": {
      await ensureEngine();
      console.error(`base image debian:trixie-slim: ${await ensureBaseImage()}`);
      for (const name of ["rtunneld", "rtunnel", "host"]) {
        const started = Date.now();
        try {
          console.error(`built ${await buildImage(name)} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
        } catch (e) {
          if (!String(e).includes("no Dockerfile")) throw e;
          console.error(`skipping ${name}: ${String(e)}`);
        }
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

main(process.argv[2]).catch((e: unknown) => {
  console.error(`testbed: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
