// What the kit runs on a device (provision/device/commands.ts), as text and, where it touches
// only the login user's files, run for real by sh and bash in a temp HOME; the shell quoting
// rule behind all of it (lib/shell.ts); and the platform the agent image is built for.
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test from "ava";
import fc from "fast-check";
import { AGENT_CONTAINER, agentPath, agentRunArgs } from "../lib/contract/agent.ts";
import { parsePublicKey } from "../lib/keys.ts";
import { quote, Script, sh } from "../lib/shell.ts";
import {
  authorizeKey,
  cleanupDevice,
  deauthorizeKey,
  distroIds,
  dropPreviousKey,
  installDocker,
  makeNewKey,
  restorePreviousKey,
  startAgent,
  swapInNewKey,
} from "../provision/device/commands.ts";
import { agentPlatform, platformOfMachine } from "../provision/device/runtime.ts";

const KEY = parsePublicKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2cck8EOaHbiWbCBdjzWCjhONoEIKmWbfJB/kHOsUrH x");
const OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSuiFL6Z+W79a9yoZoxkDyzGQnCCeTY2iTi/M6ttWZk mine";

function runIn(shell: string, script: Script, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(shell, ["-c", script.text], { env }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
  });
}

test("sh`` quotes every interpolated value as one word; a Script goes in as it is", async (t) => {
  let checked = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(fc.string({ unit: "binary" }).map((s) => s.replaceAll("\0", "")), { minLength: 1, maxLength: 4 }), async (words) => {
      const out = await runIn("bash", sh`printf '%s\\0' ${words}`, process.env);
      t.deepEqual(out.stdout.split("\0").slice(0, -1), words);
      checked++;
      return true;
    }),
    { numRuns: 200 },
  );
  t.is(checked, 200);
  t.is(quote("plain-word_1.2:/x"), "plain-word_1.2:/x");
  t.is(quote("it's"), `'it'\\''s'`);
  t.is(sh`a ${sh`b ${"c d"}`} e`.text, "a b 'c d' e");
});

test("device commands are built with every value quoted and the agent's contract's paths", (t) => {
  t.regex(startAgent("reg.example/rtunnel@sha256:ab").text, new RegExp(`^docker rm -f ${AGENT_CONTAINER} >/dev/null 2>&1 \\|\\| true; docker ${agentRunArgs("reg.example/rtunnel@sha256:ab").join(" ")}$`));
  t.regex(startAgent("x y").text, / 'x y'$/, "an odd image name stays one word");
  const swap = swapInNewKey().text.split("\n");
  t.deepEqual(swap, [
    "set -e",
    `mv -f ${agentPath("key")} ${agentPath("previousKey")}`,
    `mv -f ${agentPath("key")}.pub ${agentPath("previousKey")}.pub`,
    `mv -f ${agentPath("key")}.new ${agentPath("key")}`,
    `mv -f ${agentPath("key")}.new.pub ${agentPath("key")}.pub`,
  ], "the current key is kept as the previous one before the new one takes its place");
  t.regex(restorePreviousKey().text, /mv -f \/etc\/rtunnel\/id_ed25519\.previous \/etc\/rtunnel\/id_ed25519/);
  t.regex(dropPreviousKey().text, /^rm -f \/etc\/rtunnel\/id_ed25519\.previous \/etc\/rtunnel\/id_ed25519\.previous\.pub$/);
  t.regex(makeNewKey("raspi").text, /ssh-keygen -q -t ed25519 -N '' -C rtunnel-raspi -f \/etc\/rtunnel\/id_ed25519\.new/);
  t.regex(cleanupDevice().text, /^rm -f .*id_ed25519\.previous/);
  t.regex(cleanupDevice().text, /setsid sh -c 'sleep 2; docker rm -f rtunnel'/);
  t.regex(installDocker(distroIds('ID=raspbian\nID_LIKE=debian\n'))!.text, /apt-get install -y -qq docker\.io/);
  t.is(installDocker(distroIds("ID=plan9\n")), undefined);
});

for (const shell of ["bash", "sh"]) {
  test(`authorize and deauthorize (${shell}): a key is added once; taken out, the rest and the file's mode stay; a failing grep leaves the file as it was`, async (t) => {
    const home = await mkdtemp(path.join(os.tmpdir(), "rtunnel-deauth-"));
    t.teardown(() => rm(home, { recursive: true, force: true }));
    const env = (bin?: string) => ({ ...process.env, HOME: home, PATH: bin ? `${bin}:${process.env.PATH ?? ""}` : (process.env.PATH ?? "") });
    const file = path.join(home, ".ssh", "authorized_keys");
    await mkdir(path.dirname(file), { mode: 0o700 });
    await writeFile(file, `${OTHER}\n# a comment\n`, { mode: 0o640 });
    t.is((await runIn(shell, authorizeKey(KEY, "rtunnel-laptop-b"), env())).stdout.trim(), "added");
    t.is((await runIn(shell, authorizeKey(KEY, "rtunnel-laptop-b"), env())).stdout.trim(), "present");
    const text = await readFile(file, "utf8");
    t.is(text, `${OTHER}\n# a comment\n${KEY.type} ${KEY.base64} rtunnel-laptop-b\n`);

    // grep exits 2 (a full SD card) after writing part of its output: nothing may change.
    const bin = path.join(home, "bin");
    await mkdir(bin);
    await writeFile(path.join(bin, "grep"), "#!/bin/sh\nprintf 'ssh-ed25519 AAAA'\nexit 2\n", { mode: 0o755 });
    const failed = await runIn(shell, deauthorizeKey(KEY), env(bin));
    t.not(failed.code, 0);
    t.regex(failed.stderr, /grep failed \(exit 2\)/);
    t.is(await readFile(file, "utf8"), text, "authorized_keys untouched");
    t.deepEqual((await readdir(path.dirname(file))).sort(), ["authorized_keys"], "no temp file left");

    const ok = await runIn(shell, deauthorizeKey(KEY), env());
    t.is(ok.code, 0, ok.stderr);
    t.is(await readFile(file, "utf8"), `${OTHER}\n# a comment\n`);
    t.is((await stat(file)).mode & 0o777, 0o640);
    // The key as the only line: grep keeps nothing (exit 1), which is success, and the file is empty.
    await writeFile(file, `${KEY.type} ${KEY.base64}\n`);
    t.is((await runIn(shell, deauthorizeKey(KEY), env())).code, 0);
    t.is(await readFile(file, "utf8"), "");
    t.deepEqual((await readdir(path.dirname(file))).sort(), ["authorized_keys"]);
  });
}

test("the agent's platform: what the device's Docker runs, the ARM variant from uname; a 32-bit userland on a 64-bit kernel is arm/v7", (t) => {
  t.is(platformOfMachine("x86_64"), "linux/amd64");
  t.is(platformOfMachine("aarch64"), "linux/arm64");
  t.is(platformOfMachine("armv7l"), "linux/arm/v7");
  t.is(platformOfMachine("mips"), undefined);
  t.deepEqual(agentPlatform("arm64", "aarch64"), { platform: "linux/arm64", reason: "the device's Docker runs arm64" });
  t.is(agentPlatform("arm", "aarch64").platform, "linux/arm/v7");
  t.regex(agentPlatform("arm", "aarch64").reason, /32-bit userland on a 64-bit kernel/);
  t.is(agentPlatform("arm", "armv6l").platform, "linux/arm/v5", "Debian's armel: Debian publishes nothing for linux/arm/v6");
  t.is(agentPlatform(undefined, "x86_64").platform, "linux/amd64");
  t.is(agentPlatform("s390x", "s390x").platform, undefined);
});
