// The user-data renderer, tested directly: shellcheck on every script it writes, the
// systemd unit, the values it refuses, and that no secret can get in.

import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import fc from "fast-check";
import {
  cloudRelayRunOptions, HOST_KEY_FILE, renderPrepareScript, renderRunScript, renderUnit, renderUserData,
  type CloudInitInput,
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

test("the unit restarts the relay forever, after docker and the state mount", (t) => {
  const unit = renderUnit();
  for (const line of ["Restart=always", "Requires=docker.service", "RequiresMountsFor=/var/lib/rtunneld", "StartLimitIntervalSec=0", "ExecStart=/usr/local/sbin/rtunneld-run", "ExecStartPre=/usr/local/sbin/rtunneld-prepare", "WantedBy=multi-user.target"]) {
    t.true(unit.split("\n").includes(line), line);
  }
  t.is(written(renderUserData(INPUT), "/etc/systemd/system/rtunneld.service"), unit);
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

test("the data volume is formatted only when blkid finds nothing on it", (t) => {
  const ud = renderUserData(INPUT);
  t.regex(ud, /blkid -p "\$DATA_DEVICE" >\/dev\/null 2>&1 \|\| probe=\$\?\nif \[ "\$probe" -eq 2 \]; then\n.*\n {2}mkfs\.xfs/);
  t.is(ud.match(/mkfs/g)?.length, 1);
  t.regex(ud, /nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0/);
  t.regex(ud, /defaults,nofail/);
});

test("docker is installed with dnf and the admin keys are written as given", (t) => {
  const ud = renderUserData(INPUT);
  t.regex(ud, /^dnf install -y docker$/m);
  t.is(written(ud, "/etc/rtunneld/admin_keys"), `${INPUT.adminPublicKeys[0]}\n`);
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
