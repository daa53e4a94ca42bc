// `npm run demo` as a newcomer runs it: relay and device come up, the device is enrolled, the
// printed ssh line works; `npm run demo -- down` leaves nothing labelled rtunnel.demo behind.
import { existsSync } from "node:fs";
import path from "node:path";
import test from "ava";
import { randomBytes } from "node:crypto";
import { docker, ensureDocker, repoRoot, run } from "./bed/index.ts";

// Its own instance: a demo someone is running in this checkout is left alone.
const instance = `rtunnel-demo-t${randomBytes(4).toString("hex")}`;
const dir = `.${instance}`;

const demo = (args: string[]) =>
  run(process.execPath, ["--import", "tsx", path.join(repoRoot, "provision", "demo.ts"), ...args], { check: false, cwd: repoRoot, timeoutMs: 600_000, env: { ...process.env, RTUNNEL_DEMO_INSTANCE: instance } });

const leftovers = async () => {
  const ls = async (kind: string[]) => (await docker([...kind, "-q", "--filter", `label=rtunnel.demo=${instance}`])).stdout.split("\n").filter(Boolean);
  return [...(await ls(["ps", "-a"])), ...(await ls(["network", "ls"])), ...(await ls(["volume", "ls"]))];
};

test.before(async () => {
  await ensureDocker();
});

test.after.always(async () => {
  await demo(["down"]);
});

test.serial("[docker] npm run demo enrolls a local device and prints an ssh line that works; demo down removes it all", async (t) => {
  const up = await demo([]);
  t.is(up.code, 0, up.stderr);
  t.is(up.stdout, `ssh -F ${dir}/ssh/config raspi\n`);
  t.true(up.stderr.includes(`demo: ssh -F ${dir}/ssh/config raspi hostname → raspi`), up.stderr);
  const again = await run("ssh", ["-F", `${dir}/ssh/config`, "raspi", "cat", "/etc/hostname"], { cwd: repoRoot, check: false, timeoutMs: 30_000 });
  t.is(again.stdout.trim(), "raspi", again.stderr);

  const down = await demo(["down"]);
  t.is(down.code, 0, down.stderr);
  t.deepEqual(await leftovers(), []);
  t.false(existsSync(path.join(repoRoot, dir)));
});
