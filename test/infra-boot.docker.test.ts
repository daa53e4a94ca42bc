// The cloud's user data, booted: renderUserData's script is run, as cloud-init runs it (once),
// on a host with systemd as PID 1, whose data volume is attached only minutes later (as on an
// instance replacement) and whose first `dnf install` fails (a mirror outage). The relay must
// still come up, by systemd's own retries, with its state on that volume.
//
// What is real: systemd (the unit, Restart=, TimeoutStartSec), the data volume (a loop device
// that appears under its /dev/disk/by-id name only after the first starts have failed), blkid,
// mkfs.xfs, the mount, dockerd, `docker pull` by digest from a registry, and the relay image.
// What is stood in for (lib/fixtures/images/relay-host/standins, on the host's PATH, each
// recording its calls; there is no AWS and no Amazon Linux here): `dnf` (installs the docker
// package that the image holds aside, after failing as often as the test says), `aws` (SSM
// get-parameter prints the value the test stored, ECR get-login-password prints a password)
// and `docker login`/`logout` (the registry here needs no login).

import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { renderUserData, STATE_DIR, type CloudInitInput } from "../infra/cloudInit.ts";
import { RELAY_REGISTRY_FILE } from "../lib/contract/relay.ts";
import { keyLine, parsePublicKey } from "../lib/keys.ts";
import { buildImage, docker, ensureDocker, exec, keygen, run, useScope, waitFor } from "./bed/index.ts";

test.before(async () => {
  await ensureDocker();
});

/** How the relay-host fixture must run here: systemd as PID 1, mounts, and an engine inside. */
const HOST_RUN_FLAGS: readonly string[] = [
  "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
  "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
  "--cgroupns", "private", "--tmpfs", "/run", "--tmpfs", "/run/lock",
];

const VOLUME_ID = "vol-0123456789abcdef0";
/** The name udev gives an attached EBS volume on a Nitro instance (the NVMe serial is the volume id). */
const VOLUME_DEVICE = `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${VOLUME_ID.replace("-", "")}`;
const HOST_KEY_PARAMETER = "/rtunnel/boot-test/ssh_host_ed25519_key";
const REMOTE_PORT = 12345;

const sh = (container: string, script: string, input?: string) => exec(container, ["bash", "-c", script], { check: false, input, timeoutMs: 600_000 });
const lines = async (container: string, file: string) => (await sh(container, `cat ${file} 2>/dev/null`)).stdout.split("\n").filter(Boolean);
const unitProperty = async (container: string, property: string) => (await sh(container, `systemctl show -p ${property} --value rtunneld.service`)).stdout.trim();

test("[docker] the user data enables the relay at once, and systemd brings it up after a failed dnf and a data volume attached late", async (t) => {
  // A hang guard, not a measure: the first build of the host image and the starts' retries on a
  // busy 2-core machine take many minutes.
  t.timeout(60 * 60_000, "the boot test hung");
  const scope = useScope(t);
  const [relayImage, hostImage] = await Promise.all([buildImage("rtunneld"), buildImage("relay-host")]);
  const dir = mkdtempSync(join(tmpdir(), "rtunnel-infra-boot-"));
  const hostKey = await keygen(join(dir, "ssh_host_ed25519_key"), "ssh_host_ed25519_key");
  const admin = await keygen(join(dir, "admin"), "admin");

  // The EBS volume: a blank sparse file on a loop device of this machine. The host may use it
  // (the cgroup rule) but has no node for it until the test "attaches" it.
  const backing = join(dir, "data-volume.img");
  execFileSync("truncate", ["-s", "512M", backing]);
  const loop = (await run("losetup", ["--find", "--show", backing])).stdout.trim();
  t.teardown(() => run("losetup", ["-d", loop], { check: false }).then(() => undefined));
  const minor = Number(/^\/dev\/loop(\d+)$/.exec(loop)?.[1] ?? NaN);
  t.true(Number.isInteger(minor), `losetup gave ${loop}`);

  const host = scope.name("relay-host");
  await scope.run(["--name", host, "--hostname", "relay-host", ...HOST_RUN_FLAGS, "--device-cgroup-rule", `b 7:${minor} rwm`, hostImage]);
  await waitFor("systemd on the relay host", async () => /^(running|degraded)$/.test((await sh(host, "systemctl is-system-running")).stdout.trim()), { tries: 480, intervalMs: 500 });

  // ECR's place: the relay image pushed to the host's registry, then referred to by digest.
  await waitFor("the host's registry", async () => (await sh(host, "exec 3<>/dev/tcp/127.0.0.1/5000")).code === 0, { tries: 480, intervalMs: 500 });
  const tar = join(dir, "rtunneld.tar");
  await docker(["save", "-o", tar, relayImage], { timeoutMs: 600_000 });
  await docker(["cp", tar, `${host}:/root/rtunneld.tar`], { timeoutMs: 600_000 });
  const pushed = await sh(host, "skopeo copy --quiet --dest-tls-verify=false docker-archive:/root/rtunneld.tar docker://127.0.0.1:5000/rtunnel/rtunneld:boot && rm /root/rtunneld.tar && skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://127.0.0.1:5000/rtunnel/rtunneld:boot");
  t.is(pushed.code, 0, `push to the host's registry: ${pushed.stderr}`);
  const image = `127.0.0.1:5000/rtunnel/rtunneld@${pushed.stdout.trim()}`;

  // The SecureString's value, as SSM would return it; the mirror fails the first two installs.
  const stored = await sh(host, `install -d /etc/standins/ssm${HOST_KEY_PARAMETER.replace(/\/[^/]+$/, "")} && cat >/etc/standins/ssm${HOST_KEY_PARAMETER} && echo 2 >/etc/standins/dnf-failures`, execFileSync("cat", [hostKey.file], { encoding: "utf8" }));
  t.is(stored.code, 0, stored.stderr);

  const input: CloudInitInput = {
    region: "eu-central-1",
    hostKeyParameter: HOST_KEY_PARAMETER,
    image,
    remotePort: REMOTE_PORT,
    portRange: "20000-29999",
    adminPublicKeys: [keyLine(parsePublicKey(admin.pub), "admin")],
    dataVolumeId: VOLUME_ID,
  };
  const userData = renderUserData(input);
  writeFileSync(join(dir, "user-data"), userData);
  await docker(["cp", join(dir, "user-data"), `${host}:/var/lib/user-data`]);

  // cloud-init runs it once; it must end (with success) although neither docker nor the volume is there.
  const boot = await sh(host, "bash /var/lib/user-data");
  t.is(boot.code, 0, `the user data exits 0 at once: ${boot.stderr}`);
  t.is((await sh(host, "systemctl is-enabled rtunneld.service")).stdout.trim(), "enabled");
  t.is(await unitProperty(host, "TimeoutStartUSec"), "20min", "a first start that installs docker and pulls the image has 20 minutes");

  // systemd retries: dnf fails twice, then the volume is missing, start after start.
  await waitFor("the start to wait for the data volume", async () => (await sh(host, "journalctl -u rtunneld.service --no-pager")).stdout.includes(`data volume ${VOLUME_DEVICE} not attached yet`), { tries: 1200, intervalMs: 500 });
  await waitFor("a second start that finds no volume", async () => Number((await sh(host, "journalctl -u rtunneld.service --no-pager | grep -c 'not attached yet'")).stdout.trim()) >= 2, { tries: 1200, intervalMs: 500 });
  t.is((await lines(host, "/var/log/standins/dnf.log")).length, 3, "dnf failed twice and was run again until it installed docker");
  t.is((await sh(host, "docker ps -a --format '{{.Names}}'")).stdout.trim(), "", "no relay before the volume is mounted");
  t.false((await sh(host, `mountpoint -q ${STATE_DIR}`)).code === 0);

  // The volume is attached: the kernel's node and udev's by-id link appear.
  const attach = await sh(host, `mknod /dev/nvme1n1 b 7 ${minor} && mkdir -p /dev/disk/by-id && ln -s ../../nvme1n1 ${VOLUME_DEVICE}`);
  t.is(attach.code, 0, attach.stderr);

  await waitFor("the relay container to run on the host", async () => (await sh(host, "docker inspect --format '{{.State.Running}}' rtunneld")).stdout.trim() === "true", { tries: 2400, intervalMs: 500 });
  await waitFor("the relay's sshd on the host's port", async () => (await sh(host, `docker logs rtunneld 2>&1 | grep -q 'ready: sshd listening'`)).code === 0, { tries: 1200, intervalMs: 500 });

  const mount = (await sh(host, `findmnt -n -o SOURCE,FSTYPE,OPTIONS ${STATE_DIR}`)).stdout.trim();
  t.regex(mount, /^\/dev\/nvme1n1 xfs .*nosuid,nodev,noexec/, "the blank volume was formatted xfs and mounted at the state directory");

  // The relay serves the host key from SSM, on the published port, to the outside.
  const address = (await docker(["inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", host])).stdout.trim();
  let scanned = "";
  await waitFor("the relay host key over the network", async () => {
    const r = await run("ssh-keyscan", ["-t", "ed25519", "-p", String(REMOTE_PORT), address], { check: false, timeoutMs: 60_000 });
    scanned = r.stdout.split("\n").find((l) => l.includes("ssh-ed25519")) ?? "";
    return scanned !== "";
  }, { tries: 240, intervalMs: 500 });
  t.is(keyLine(parsePublicKey(scanned.replace(/^\S+\s+/, ""))), keyLine(parsePublicKey(hostKey.pub)));

  // The admin key from the user data works, and what the relay records lands on the volume.
  const knownHosts = join(dir, "known_hosts");
  writeFileSync(knownHosts, `[${address}]:${REMOTE_PORT} ${keyLine(parsePublicKey(hostKey.pub))}\n`);
  const device = await keygen(join(dir, "device"), "device");
  const added = await run("ssh", [
    "-F", "none", "-i", admin.file, "-p", String(REMOTE_PORT),
    "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`,
    `admin@${address}`, "add-device", "boot-test",
  ], { check: false, input: `${device.pub}\n`, timeoutMs: 300_000 });
  t.is(added.code, 0, `admin add-device: ${added.stderr}`);
  t.regex((await sh(host, `cat ${RELAY_REGISTRY_FILE}`)).stdout, /"boot-test"/, "the registry is on the host's state volume");

  // What the stand-ins were asked: the SecureString with decryption, one ECR login for one pull.
  const aws = await lines(host, "/var/log/standins/aws.log");
  t.true(aws.some((l) => l.includes(`ssm get-parameter --region eu-central-1 --name ${HOST_KEY_PARAMETER} --with-decryption`)), aws.join("\n"));
  t.deepEqual((await lines(host, "/var/log/standins/docker.log")).map((l) => l.split(" ").slice(1, 3).join(" ")), ["docker login", "docker logout"]);

  // A later start (a reboot, a crash) mounts the same filesystem and never formats it again.
  const again = await sh(host, `systemctl stop rtunneld.service && umount ${STATE_DIR} && ! mountpoint -q ${STATE_DIR} && systemctl start rtunneld.service && cat ${RELAY_REGISTRY_FILE}`);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /"boot-test"/, "the second start mounted the volume as it was");
  t.is((await sh(host, "journalctl -u rtunneld.service --no-pager | grep -c 'formatting blank data volume'")).stdout.trim(), "1");
});
