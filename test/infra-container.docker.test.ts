// What boots in AWS is what was tested: the cloud-init run script (renderRunScript over
// relayRunArgs with the cloud options) is run here for real against the locally built
// rtunneld image, with only the image tag, the host paths, the published address and the
// container name swapped for local ones.

import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { cloudRelayRunOptions, renderRunScript } from "../infra/cloudInit.ts";
import { keyLine, parsePublicKey } from "../lib/keys.ts";
import { relayRunArgs } from "../lib/contract/relayRun.ts";
import { buildImage, docker, ensureDocker, keygen, run, useScope, waitFor, waitRelayReady } from "./bed/index.ts";

test.before(async () => {
  await ensureDocker();
});

const publicKeyLine = (line: string) => keyLine(parsePublicKey(line));

test("[docker] the cloud-init run script starts the relay image with the pinned host key and the admin keys", async (t) => {
  const scope = useScope(t);
  const image = await buildImage("rtunneld");
  const dir = mkdtempSync(join(tmpdir(), "rtunnel-infra-run-"));
  const hostKey = await keygen(join(dir, "ssh_host_ed25519_key"), "ssh_host_ed25519_key");
  const admin = await keygen(join(dir, "admin"), "admin");
  const adminKeys = join(dir, "admin_keys");
  writeFileSync(adminKeys, `${admin.pub}\n`);

  const name = scope.name("relay");
  const args = relayRunArgs({
    // Everything as in the cloud (cloudInit.ts) ...
    ...cloudRelayRunOptions({ image, remotePort: 12345, portRange: "20000-29999" }),
    // ... but local: image tag, host paths, a free loopback port, a scoped name and volume.
    containerName: name,
    publish: "127.0.0.1:",
    hostKeyFile: hostKey.file,
    adminKeysFile: adminKeys,
    stateVolume: await scope.volume("state"),
    detach: true,
    extraFlags: scope.flags,
  });
  const script = renderRunScript(args);
  t.regex(script, new RegExp(`^exec docker run -d --name ${name} -p 127\\.0\\.0\\.1::2222 `, "m"));
  await run("bash", ["-c", script]);
  await waitRelayReady(name);

  const logConfig = JSON.parse((await docker(["inspect", "--format", "{{json .HostConfig.LogConfig}}", name])).stdout) as unknown;
  t.deepEqual(logConfig, { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } }, "the engine rotates the relay's log: 3 files of 10 MiB at most");

  const port = Number((await docker(["port", name, "2222/tcp"])).stdout.trim().split("\n")[0]!.split(":").pop());
  t.true(port > 0, `published port ${port}`);

  let scanned = "";
  await waitFor("the relay's sshd to show a host key", async () => {
    const r = await run("ssh-keyscan", ["-t", "ed25519", "-p", String(port), "127.0.0.1"], { check: false });
    scanned = r.stdout.split("\n").find((l) => l.includes("ssh-ed25519")) ?? "";
    return scanned !== "";
  }, { tries: 240, intervalMs: 500 });
  const served = publicKeyLine(scanned.replace(/^\S+\s+/, ""));
  t.is(served, publicKeyLine(hostKey.pub), "the relay serves the mounted host key, not one of its own");
  t.is(parsePublicKey(served).fingerprint, execFileSync("ssh-keygen", ["-lf", `${hostKey.file}.pub`], { encoding: "utf8" }).split(" ")[1]!);

  const knownHosts = join(dir, "known_hosts");
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${publicKeyLine(hostKey.pub)}\n`);
  const ssh = await run("ssh", [
    "-F", "none", "-i", admin.file, "-p", String(port),
    "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`,
    "admin@127.0.0.1", "host-key",
  ], { check: false, timeoutMs: 180_000 });
  t.is(ssh.code, 0, `admin host-key: ${ssh.stderr}`);
  t.is(publicKeyLine(ssh.stdout), publicKeyLine(hostKey.pub), "the admin key from adminKeysFile is accepted");
});
