// `npm run demo` as a newcomer runs it: relay and device come up, the device is enrolled, the
// printed ssh line works; `npm run demo -- down` leaves nothing labelled rtunnel.demo behind.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import test from "ava";
import { randomBytes } from "node:crypto";
import { RELAY_CONTAINER_PORT } from "../lib/contract/relay.ts";
import { docker, ensureDocker, repoRoot, run } from "./bed/index.ts";
import { runCli } from "./bed/index.ts";

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
  const again = await run("ssh", ["-F", `${dir}/ssh/config`, "raspi", "cat", "/etc/hostname"], { cwd: repoRoot, check: false, timeoutMs: 120_000 });
  t.is(again.stdout.trim(), "raspi", again.stderr);

  // The laptop side goes only through 127.0.0.1 (the path Docker Desktop offers too); the
  // device reaches the relay by its own address on the demo network.
  const facts = JSON.parse(await readFile(path.join(repoRoot, dir, "relay.json"), "utf8")) as { host: string; port: number; deviceSide?: { host: string; port: number } };
  t.is(facts.host, "127.0.0.1");
  t.not(facts.deviceSide?.host, "127.0.0.1");
  t.is(facts.deviceSide?.port, RELAY_CONTAINER_PORT);
  const fragment = await readFile(path.join(repoRoot, dir, "ssh", "config.d", "rtunnel"), "utf8");
  t.deepEqual([...fragment.matchAll(/^ {2}HostName (\S+)$/gm)].map((m) => m[1]), ["127.0.0.1", "127.0.0.1"], "the relay hop and the device, both through 127.0.0.1");

  // The fleet commands it prints work against it, as printed.
  const printed = up.stderr.split("\n").map((l) => /^demo: {3}npm run status -- (.*)$/.exec(l)?.[1]).find(Boolean);
  t.truthy(printed, up.stderr);
  const status = await runCli(["status", ...printed!.split(" ")]);
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, /\nraspi\s+device\s+online\s/);

  const down = await demo(["down"]);
  t.is(down.code, 0, down.stderr);
  t.deepEqual(await leftovers(), []);
  t.false(existsSync(path.join(repoRoot, dir)));
});
