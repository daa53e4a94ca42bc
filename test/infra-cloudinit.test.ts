// The user-data renderer, tested directly: shellcheck on every script it writes, the
// systemd unit, the values it refuses, and that no secret can get in.

import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import fc from "fast-check";
import {
  cloudRelayRunOptions, HOST_KEY_FILE, renderPrepareScript, renderRunScript, renderUnit, renderUserData, renderVolumeScript,
  START_TIMEOUT, type CloudInitInput,
} from "../infra/cloudInit.ts";
import { relayRunArgs } from "../lib/contract/relayRun.ts";
import { quote } from "../lib/shell.ts";

const INPUT: CloudInitInput = {
  region: "eu-central-1",
  hostKeyParameter: "/rtunnel/relay/ssh_host_ed25519_key",
  image: `123456789012.dkr.ecr.eu-central-1.amazonaws.com/rtunnel/relay-rtunneld@sha256:${"ab".repeat(32)}`,
  remotePort: 4022,
  portRange: "20000-29999",
  adminPublicKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op@laptop"],
  dataVolumeId: "vol-0123456789abcdef0",
};

function shellcheck(name: string, text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), "rtunnel-ci-")), name);
  writeFileSync(file, text);
  try {
    execFileSync("shellcheck", ["--shell=bash", "--severity=style", file], { encoding: "utf8" });
    return "";
  } catch (e) {
    return String((e as { stdout?: string }).stdout ?? e);
  }
}

/** The body of the heredoc that writes `path` inside the user-data script. */
function written(userData: string, path: string): string {
  const m = new RegExp(`cat >${path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} <<'RTUNNEL_EOF'\\n([\\s\\S]*?)RTUNNEL_EOF\\n`).exec(userData);
  if (!m) throw new Error(`user-data does not write ${path}`);
  return m[1]!;
}

test("the user-data script and every script it writes pass shellcheck", (t) => {
  const ud = renderUserData(INPUT);
  t.is(shellcheck("user-data.sh", ud), "");
  t.is(shellcheck("rtunneld-prepare", written(ud, "/usr/local/sbin/rtunneld-prepare")), "");
  t.is(shellcheck("rtunneld-volume", written(ud, "/usr/local/sbin/rtunneld-volume")), "");
  t.is(shellcheck("rtunneld-run", written(ud, "/usr/local/sbin/rtunneld-run")), "");
});

test("the run script is exactly `exec docker <relayRunArgs>` with the cloud options", (t) => {
  const ud = renderUserData(INPUT);
  const args = relayRunArgs(cloudRelayRunOptions(INPUT));
  t.is(written(ud, "/usr/local/sbin/rtunneld-run"), renderRunScript(args));
  const execLine = renderRunScript(args).split("\n").find((l) => l.startsWith("exec "))!;
  const parsed = execFileSync("bash", ["-c", `${execLine.replace(/^exec docker /, "printf '%s\\n' ")}`], { encoding: "utf8" });
  t.deepEqual(parsed.trimEnd().split("\n"), args, "bash splits the line back into the same arguments");
  t.false(args.includes("-d"), "systemd runs the container in the foreground");
  t.true(args.includes(`${HOST_KEY_FILE}:${HOST_KEY_FILE}:ro`));
  t.is(args.at(-1), INPUT.image, "by digest");
});

test("every relay container rotates its log: the json-file driver, named, with a size cap, locally and in the cloud", (t) => {
  const local = relayRunArgs({ image: "x", containerName: "y", publish: "1", stateVolume: "v" });
  const cloud = relayRunArgs(cloudRelayRunOptions(INPUT));
  for (const args of [local, cloud]) {
    const i = args.indexOf("--log-driver");
    // Named explicitly: log options are per driver, and an engine whose default driver is another
    // (journald, syslog) would refuse max-file.
    t.is(args[i + 1], "json-file");
    const opts = args.flatMap((a, j) => (args[j - 1] === "--log-opt" ? [a] : []));
    t.deepEqual(opts, ["max-size=10m", "max-file=3"]);
    t.true(i >= 0 && i < args.length - 2, "among the flags, before the image");
  }
});

test("quote survives any string through bash", (t) => {
  fc.assert(fc.property(fc.array(fc.string({ unit: "binary" }).map((s) => s.replace(/\0/g, "")), { minLength: 1, maxLength: 4 }), (args) => {
    const out = execFileSync("bash", ["-c", `printf '%s\\0' ${args.map(quote).join(" ")}`]).toString("utf8");
    t.deepEqual(out.split("\0").slice(0, -1), args);
  }), { numRuns: 25 });
});

test("the unit restarts the relay forever; docker, the host key, the image and the state volume are steps of its start", (t) => {
  const unit = renderUnit().split("\n");
  for (const line of ["Restart=always", "StartLimitIntervalSec=0", "ExecStartPre=/usr/local/sbin/rtunneld-prepare", "ExecStartPre=/usr/local/sbin/rtunneld-volume", "ExecStart=/usr/local/sbin/rtunneld-run", "WantedBy=multi-user.target"]) {
    t.true(unit.includes(line), line);
  }
  t.true(unit.indexOf("ExecStartPre=/usr/local/sbin/rtunneld-prepare") < unit.indexOf("ExecStartPre=/usr/local/sbin/rtunneld-volume"), "docker before the volume, so a late volume does not hold up the install and the pull");
  // A unit whose RequiresMountsFor= mount failed, or whose Requires= unit does not exist yet
  // (docker before dnf ran), fails its start without Restart= ever trying again.
  t.false(unit.some((l) => /^(RequiresMountsFor|Requires|BindsTo)=/.test(l)), unit.join("\n"));
  t.is(written(renderUserData(INPUT), "/etc/systemd/system/rtunneld.service"), renderUnit());
});

test("a first start that installs docker and pulls the image is not killed by systemd's 90 s default", (t) => {
  const timeout = renderUnit().split("\n").find((l) => l.startsWith("TimeoutStartSec="));
  t.is(timeout, `TimeoutStartSec=${START_TIMEOUT}`);
  const minutes = Number(/^(\d+)min$/.exec(START_TIMEOUT)?.[1]);
  t.true(minutes >= 10, `${START_TIMEOUT}: dnf and a pull of the relay image on a t4g.nano take minutes`);
});

test("the user data only writes files and enables the unit: nothing in it waits or can fail on the network", (t) => {
  const ud = renderUserData(INPUT);
  const body = ud.replace(/cat >\S+ <<'RTUNNEL_EOF'\n[\s\S]*?RTUNNEL_EOF\n/g, "").replace(/^#.*\n/gm, "");
  for (const word of ["dnf", "aws", "docker", "sleep", "mount", "mkfs", "blkid", "--now"]) t.false(body.includes(word), `user-data itself runs ${word}`);
  t.regex(body, /^systemctl enable rtunneld\.service$/m);
  t.regex(body, /^systemctl start --no-block rtunneld\.service$/m);
});

test("the host key is fetched from the SecureString into a root-only file, the image logged in and pulled by digest", (t) => {
  const prep = renderPrepareScript(INPUT);
  t.regex(prep, /aws ssm get-parameter --region "\$REGION" --name "\$HOST_KEY_PARAMETER" --with-decryption/);
  t.regex(prep, /^umask 077$/m);
  t.regex(prep, /chmod 0600 "\$tmp"\n {2}mv -f "\$tmp" "\$HOST_KEY_FILE"/);
  t.regex(prep, /aws ecr get-login-password --region "\$REGION" \| docker login --username AWS --password-stdin "\$REGISTRY"/);
  t.regex(prep, /^readonly REGISTRY=123456789012\.dkr\.ecr\.eu-central-1\.amazonaws\.com$/m);
  t.regex(prep, /docker pull "\$IMAGE"/);
});

test("the data volume is formatted only when blkid finds nothing on it, and a missing one is retried", (t) => {
  const vol = renderVolumeScript(INPUT);
  t.is(written(renderUserData(INPUT), "/usr/local/sbin/rtunneld-volume"), vol);
  t.regex(vol, /blkid -p "\$DATA_DEVICE" >\/dev\/null 2>&1 \|\| probe=\$\?\nif \[ "\$probe" -eq 2 \]; then\n.*\n {2}mkfs\.xfs/);
  t.is(vol.match(/mkfs/g)?.length, 1);
  t.regex(vol, /^readonly DATA_DEVICE=\/dev\/disk\/by-id\/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0$/m);
  t.regex(vol, /if \[ ! -e "\$DATA_DEVICE" \]; then\n.*\n {2}exit 75\n/, "no device yet: the start fails and systemd tries again");
  t.notRegex(vol, /sleep|seq /, "no wait inside the step: systemd's RestartSec is the wait");
});

test("docker is installed with dnf at the start, only when missing, and the admin keys are written as given", (t) => {
  const prep = renderPrepareScript(INPUT);
  t.regex(prep, /if ! systemctl cat docker\.service >\/dev\/null 2>&1; then\n.*\n {2}dnf install -y docker\nfi/);
  t.is(written(renderUserData(INPUT), "/etc/rtunneld/admin_keys"), `${INPUT.adminPublicKeys[0]}\n`);
});

test("values that could break out of the script are refused", (t) => {
  const bad: Partial<CloudInitInput>[] = [
    { region: "us-east-1; rm -rf /" },
    { hostKeyParameter: "/x'$(id)'" },
    { image: "evil.example/rtunneld:latest" },
    { image: `repo/x@sha256:${"a".repeat(63)}` },
    { dataVolumeId: "vol-../../sda" },
    { portRange: "1-2 && id" },
    { remotePort: 22 },
    { remotePort: 1.5 },
    { adminPublicKeys: [] },
    { adminPublicKeys: ["ssh-ed25519 AAAA\nRTUNNEL_EOF\nid"] },
    { adminPublicKeys: ["-----BEGIN OPENSSH PRIVATE KEY-----"] },
  ];
  for (const b of bad) t.throws(() => renderUserData({ ...INPUT, ...b }), undefined, JSON.stringify(b));
});

test("no private key material can be in the user-data: it names the parameter, never a key", (t) => {
  const ud = renderUserData(INPUT);
  t.false(/PRIVATE KEY/.test(ud));
  t.regex(ud, /readonly HOST_KEY_PARAMETER=\/rtunnel\/relay\/ssh_host_ed25519_key/);
});
