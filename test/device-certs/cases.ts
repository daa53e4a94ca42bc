// Fleet certificates on a device (issue 15), end to end in the NAT topology of
// DESIGN.md "Test bed", for one Debian suite (its OpenSSH): trixie (10.0) and bookworm (9.2).
// Each test file calls deviceCertsTests(SUITE); the tests of a file share one world and run in
// order: a relay on `internet`; behind the home router raspi (sshd and dockerd, its sshd on a
// clock the test can move with libfaketime: the device's sshd only, never the machine's) and
// garage (sshd only, given the kit's certificate drop-in by the library, for "another
// device"); an office laptop; and a throwaway CA made here with ssh-keygen, held by an
// ssh-agent started here, in the operator's ~/.ssh/rtunnel-ca.
//
//   enrollment refuses in its plan (host CA not in the agent; a CA of the device's own), then
//   enrolls with certificates (the host key signed, the files and directives in place, the
//   laptop trusting the host CA for rtunnel-raspi instead of a pin, the real ssh checking the
//   host certificate); a certificate for raspi logs in through the relay, not to garage, and
//   garage's not to raspi; one wholly in the past is refused; an agent holding many keys does
//   not run into MaxAuthTries; a revoked certificate is refused once revoke-cert pushed the KRL
//   (status lists the device behind until then); a host key changed without a new certificate
//   is refused by the laptop (and by the operator's own pin), and a legitimate re-key enrolled
//   again is trusted as it is; the device's clock an hour behind (or two ahead) is named by
//   enrollment and explains the refusal in status; a host certificate with 10 days left makes
//   status warn and is renewed by enrollment; enrolling again changes nothing; revoke-device
//   takes every file out.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, readdir, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { NodeSSH } from "node-ssh";
import { caPaths, DEVICE_CA_PATHS, HOST_CERT_LIFETIME, BACKDATE_SECONDS, type DeviceCaRecords } from "../../lib/contract/ca.ts";
import { keyLine, parsePublicKey, type PublicKey } from "../../lib/keys.ts";
import { sh } from "../../lib/shell.ts";
import { inspectCertificate, requireCa, signUserCert, type Ca } from "../../provision/ca/ca.ts";
import { updateDeviceRecord } from "../../provision/ca/records.ts";
import { currentKrl } from "../../provision/ca/revocation.ts";
import { Device } from "../../provision/device/device.ts";
import { dropInSections, planDropIn, SSHD_DROP_IN, tunnelConnectionSpec } from "../../provision/device/sshd.ts";
import { renderLaptopFiles } from "../../provision/laptop/model.ts";
import { renderRelayFacts } from "../../provision/relay/facts.ts";
import {
  buildImage,
  copySshDir,
  createNatTopology,
  docker,
  ensureDocker,
  installSshFiles,
  keygen,
  oneLine,
  run,
  runCli,
  Scope,
  sharedWorldHooks,
  startDevice,
  startLaptop,
  startRelay,
  waitFor,
  type KeyPair,
  type RelayFixture,
  type Topology,
} from "../bed/index.ts";

interface World {
  scope: Scope;
  net: Topology;
  tmp: string;
  home: string;
  sshDir: string;
  relay: RelayFixture;
  relayFile: string;
  device: string;
  deviceIp: string;
  deviceFp: string;
  garage: string;
  garageIp: string;
  laptop: string;
  /** the laptop's key: a relay client, never in a device's authorized_keys */
  laptopKey: KeyPair;
  laptopPub: PublicKey;
  agentImage: string;
  agent: ChildProcess;
  sock: string;
  ca: Ca;
  /** raspi's relay port, once enrolled */
  port: number;
}

export function deviceCertsTests(suite: "trixie" | "bookworm"): void {
  let w: World;
  const on = (c: string, script: string, timeoutMs = 180_000) => w.scope.exec(c, ["bash", "-c", script], { check: false, timeoutMs });
  const onDevice = (script: string) => on(w.device, script);
  const agentEnv = () => ({ ...process.env, SSH_AUTH_SOCK: w.sock });

  test.before(async () => {
    await ensureDocker();
    const agentImage = await buildImage("rtunnel");
    const scope = new Scope(`certs-${suite}`);
    const net = await createNatTopology(scope);
    const tmp = await mkdtemp(path.join(os.tmpdir(), `rtunnel-certs-${suite}-`));
    const home = path.join(tmp, "home");
    const sshDir = path.join(home, ".ssh");
    await mkdir(sshDir, { recursive: true, mode: 0o700 });
    const operator = await keygen(path.join(sshDir, "id_ed25519"), "operator");
    const relay = await startRelay(scope, { network: net.internet, dir: tmp, admin: operator });
    const [device, garage, laptop] = await Promise.all([
      startDevice({ suite, hostname: "raspi", operatorKey: operator.pub, fakeClock: true, place: (args) => net.attach(net.home, scope.name("raspi"), args) }),
      startDevice({ suite, hostname: "garage", operatorKey: operator.pub, noDockerd: true, place: (args) => net.attach(net.home, scope.name("garage"), args) }),
      startLaptop((args) => net.attach(net.office, scope.name("laptop"), args), "laptop"),
    ]);
    const relayFile = path.join(tmp, "relay.json");
    await writeFile(relayFile, renderRelayFacts(relay.facts()));

    // The throwaway CA, as `ca init` lays it out (unencrypted here: a test's), and an agent holding it.
    const p = caPaths(sshDir);
    await mkdir(p.dir, { recursive: true, mode: 0o700 });
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "rtunnel-user-ca", "-f", p.userCa]);
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "rtunnel-host-ca", "-f", p.hostCa]);
    for (const f of [p.userCa, p.hostCa]) await chmod(f, 0o600);
    const sock = path.join(tmp, "agent.sock");
    const agent = spawn("ssh-agent", ["-D", "-a", sock], { stdio: "ignore" });
    await waitFor("the CA's ssh-agent", async () => existsSync(sock), { tries: 100, intervalMs: 100 });
    await run("ssh-add", ["-q", p.userCa, p.hostCa], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
    const ca = await requireCa(sshDir);
    await currentKrl(ca); // the empty KRL of version 1, as `ca init` leaves it

    const laptopKey = await keygen(path.join(tmp, "laptop"), "laptop");
    w = {
      scope, net, tmp, home, sshDir, relay, relayFile, agentImage, agent, sock, ca, laptop, laptopKey, laptopPub: parsePublicKey(laptopKey.pub),
      device: device.container, deviceIp: await net.ip(device.container, net.home.network), deviceFp: device.hostKeyFingerprint,
      garage: garage.container, garageIp: await net.ip(garage.container, net.home.network), port: 0,
    };
  });
  test.after.always(() => {
    w?.agent.kill();
  });
  sharedWorldHooks(test, () => w && { scope: w.scope, dirs: [w.tmp] });

  /** Enrollment as the operator runs it (the CA's agent at hand); `pin: false` leaves the device's host key to what this laptop knows. */
  const enroll = (extra: string[] = [], o: { pin?: boolean } = {}) =>
    runCli(
      ["enroll-device", "raspi", "--host", w.deviceIp, "--user", "pi", "--relay", w.relayFile, "--image", w.agentImage, "--client", "operator", ...(o.pin === false ? [] : ["--device-host-key", w.deviceFp]), ...extra],
      { home: w.home, agent: w.sock },
    );
  const cli = (args: string[]) => runCli([...args, "--relay", w.relayFile], { home: w.home, agent: w.sock });
  const deviceLog = async (c = w.device) => {
    const l = await docker(["logs", c], { check: false });
    return l.stdout + l.stderr;
  };
  /** The listener's listening sockets, by inode: they change when sshd reloads (it re-executes itself). */
  const listenerSockets = async () => (await onDevice("ls -l /proc/$(cat /run/sshd.pid)/fd | grep -o 'socket:.*' | sort")).stdout;
  const deviceFiles = async () =>
    (await onDevice("for f in $(find /etc/ssh /etc/rtunnel -type f 2>/dev/null | sort); do printf '%s %s\\n' \"$(stat -c '%n %a %U' \"$f\")\" \"$(sha256sum < \"$f\" | cut -c1-16)\"; done")).stdout;
  async function laptopFiles(): Promise<string> {
    const out: string[] = [];
    const walk = async (dir: string) => {
      for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
        const f = path.join(dir, e.name);
        if (e.isDirectory()) await walk(f);
        else out.push(`${path.relative(w.sshDir, f)} ${createHash("sha256").update(await readFile(f)).digest("hex").slice(0, 16)}`);
      }
    };
    await walk(w.sshDir);
    return out.join("\n");
  }
  const snapshot = async () => ({ device: await deviceFiles(), sockets: await listenerSockets(), laptop: await laptopFiles(), registry: await w.relay.registry() });
  const records = async (): Promise<DeviceCaRecords> => JSON.parse(await readFile(w.ca.paths.devices, "utf8").catch(() => "{}")) as DeviceCaRecords;
  /** A user certificate for the laptop's key, signed by the CA in the agent with ssh-keygen as the test says (`-V`, principals). */
  async function rawCert(name: string, principals: string[], validity: string): Promise<string> {
    const dir = await mkdtemp(path.join(w.tmp, "cert-"));
    await writeFile(path.join(dir, "key.pub"), `${w.laptopKey.pub}\n`);
    await run("ssh-keygen", ["-q", "-U", "-s", w.ca.paths.userCaPub, "-I", `rtunnel:${name}:1`, "-n", principals.join(","), "-V", validity, "-z", "1", path.join(dir, "key.pub")], { env: agentEnv() });
    return readFile(path.join(dir, "key-cert.pub"), "utf8");
  }
  /** A certificate of the kit (provision/ca's signUserCert: recorded, revocable by serial) for `devices`, valid from 5 minutes ago for an hour. */
  const kitCert = (name: string, devices: string[]) => signUserCert({ ca: w.ca, key: w.laptopPub, name, devices, lifetimeSeconds: 3600, agentSock: w.sock });

  /** The laptop's ~/.ssh as grant --out writes it: CertificateFile + IdentitiesOnly, raspi trusted through the host CA. */
  async function laptopWithCert(cert: string) {
    const files = renderLaptopFiles({
      relay: { host: w.relay.ip, port: w.relay.facts("network").port, hostKey: parsePublicKey(w.relay.hostKey) },
      devices: [{ name: "raspi", port: w.port, user: "pi", hostCa: w.ca.hostCa }],
      multiplex: false,
      certificateFile: "~/.ssh/id_ed25519-cert.pub",
    });
    await on(w.laptop, "rm -rf /root/.ssh && install -d -m 700 /root/.ssh /root/.ssh/config.d");
    await installSshFiles(w.laptop, { ...files, id_ed25519: await readFile(w.laptopKey.file), "id_ed25519.pub": `${w.laptopKey.pub}\n`, "id_ed25519-cert.pub": cert });
  }
  const sshRaspi = (cmd = "true", extra = "") => on(w.laptop, `ssh -o BatchMode=yes ${extra} raspi ${cmd}`);
  /** The device's log after `from` (a length of it read before). */
  const logSince = async (from: number, c = w.device) => (await deviceLog(c)).slice(from);

  test.serial(`[docker] ${suite}: enrollment refuses in its plan, one line and nothing changed anywhere, when the host CA is not in ssh-agent or the device's sshd trusts a user CA of its own`, async (t) => {
    const before = await snapshot();
    await run("ssh-add", ["-d", w.ca.paths.hostCaPub], { env: agentEnv() });
    const noCa = await enroll();
    await run("ssh-add", ["-q", w.ca.paths.hostCa], { env: agentEnv() });
    t.is(noCa.code, 2, noCa.stderr);
    oneLine(t, noCa.stderr, new RegExp(`^rtunnel: the host CA \\(${w.ca.hostCa.fingerprint.replace(/[+/]/g, "\\$&")}\\) is not loaded in ssh-agent: run ssh-add ${w.ca.paths.hostCa.replace(/[.]/g, "\\.")}$`));
    t.deepEqual(await snapshot(), before);

    await onDevice("cp /etc/ssh/sshd_config /root/sshd_config.orig && printf 'TrustedUserCAKeys /etc/ssh/their_ca.pub\\n' >> /etc/ssh/sshd_config && sshd -t");
    t.teardown(() => onDevice("cp /root/sshd_config.orig /etc/ssh/sshd_config").then(() => undefined));
    const withTheirs = await snapshot();
    const theirs = await enroll();
    t.is(theirs.code, 5, theirs.stderr);
    oneLine(t, theirs.stderr, /^rtunnel: the device raspi can't take fleet certificates as it is: its sshd already sets trustedusercakeys \/etc\/ssh\/their_ca\.pub, which rtunnel's drop-in would replace: .*; nothing was changed$/);
    t.deepEqual(await snapshot(), withTheirs);
  });

  test.serial(`[docker] ${suite}: enrollment with the CA signs raspi's host key (rtunnel-raspi, 90 days), puts the certificate files and the four directives in place, reports the clock; the laptop trusts the host CA for rtunnel-raspi, with no pin, and the real ssh checks the certificate`, async (t) => {
    t.regex((await onDevice("ssh -V 2>&1")).stdout, suite === "trixie" ? /^OpenSSH_10\./ : /^OpenSSH_9\.2/);
    const r = await enroll(["--json"]);
    t.is(r.code, 0, r.stderr);
    // The laptop of the certificate tests: a relay client for raspi, its key in no authorized_keys.
    await w.relay.adminJson(["add-client", "laptop", "--devices", "raspi"], `${w.laptopKey.pub}\n`);
    const result = JSON.parse(r.stdout) as { port: number; changed: { device: string[] }; certificates: { hostCert: string; serial: string; validBefore: string; krlVersion: number; clock: { offsetSeconds: number; problem?: string } } };
    w.port = result.port;
    t.like(result.certificates, { hostCert: "signed", krlVersion: 1 });
    t.is(result.certificates.clock.problem, undefined);
    t.regex(r.stderr, /device clock: (in step with|[\d.]+ s (behind|ahead of)) this machine \(±[\d.]+ s; certificates are backdated 5 min\)/);
    t.notRegex(r.stderr, /warning: the device's clock/);
    for (const f of [DEVICE_CA_PATHS.userCa, DEVICE_CA_PATHS.krl, "/etc/ssh/rtunnel_principals/pi", DEVICE_CA_PATHS.hostCert, SSHD_DROP_IN]) t.true(result.changed.device.includes(f), f);

    // Every directive is one this sshd knows and uses, for every connection and through the tunnel.
    const global = (await onDevice("sshd -T")).stdout.split("\n");
    const tunnel = (await onDevice(sh`sshd -T -C ${tunnelConnectionSpec("pi", "127.0.0.1")}`.text)).stdout.split("\n");
    for (const l of ["trustedusercakeys /etc/ssh/rtunnel_user_ca.pub", "revokedkeys /etc/ssh/rtunnel_revoked.krl", "authorizedprincipalsfile /etc/ssh/rtunnel_principals/%u"]) {
      t.true(global.includes(l), l);
      t.true(tunnel.includes(l), `tunnel: ${l}`);
    }
    t.true(global.includes("hostcertificate /etc/ssh/rtunnel_host_ed25519_key-cert.pub"));
    t.is((await onDevice("sshd -t 2>&1")).stdout, "", "sshd -t says nothing (the host certificate matches its key)");
    t.is((await onDevice(`stat -c '%a %U' ${DEVICE_CA_PATHS.userCa} ${DEVICE_CA_PATHS.krl} ${DEVICE_CA_PATHS.principalsDir} /etc/ssh/rtunnel_principals/pi ${DEVICE_CA_PATHS.hostCert}`)).stdout, "644 root\n644 root\n755 root\n644 root\n644 root\n");
    t.is((await onDevice("cat /etc/ssh/rtunnel_principals/pi")).stdout, "rtunnel-device:raspi\n");
    t.is((await onDevice(`sha256sum < ${DEVICE_CA_PATHS.krl}`)).stdout.split(" ")[0], createHash("sha256").update(await readFile(w.ca.paths.krl)).digest("hex"), "the CA's KRL, byte for byte");
    const listing = (await onDevice(`ssh-keygen -L -f ${DEVICE_CA_PATHS.hostCert}`)).stdout;
    t.regex(listing, /Type: ssh-ed25519-cert-v01@openssh\.com host certificate/);
    t.regex(listing, /Principals: \n\s+rtunnel-raspi\n/);
    t.true(listing.includes(`Public key: ED25519-CERT ${w.deviceFp}`));
    t.true(listing.includes(`Signing CA: ED25519 ${w.ca.hostCa.fingerprint}`));
    const record = (await records()).raspi;
    t.is(record?.krlVersion, 1);
    t.is(record?.hostCert?.serial, result.certificates.serial);
    t.is(Date.parse(record!.hostCert!.validBefore) - Date.parse(record!.hostCert!.validAfter), (HOST_CERT_LIFETIME.seconds + BACKDATE_SECONDS) * 1000);

    const known = await readFile(path.join(w.sshDir, "known_hosts.rtunnel"), "utf8");
    t.true(known.includes(`@cert-authority rtunnel-raspi ${keyLine(w.ca.hostCa)}\n`));
    t.notRegex(known, /^rtunnel-raspi /m, "no plain pin next to the CA line");
    // The operator's own files, on the office laptop: the real ssh checks the host certificate.
    await copySshDir(w.laptop, w.sshDir);
    const op = await on(w.laptop, "ssh -v -o BatchMode=yes raspi hostname");
    t.is(op.stdout.trim(), "raspi", op.stderr);
    t.regex(op.stderr, new RegExp(`Server host certificate: ssh-ed25519-cert-v01@openssh\\.com SHA256:\\S+, serial ${result.certificates.serial} ID "rtunnel:raspi:${result.certificates.serial}" CA \\S+ ${w.ca.hostCa.fingerprint.replace(/[+/]/g, "\\$&")}`));
    t.regex(op.stderr, /Host 'rtunnel-raspi' is known and matches the ED25519-CERT host certificate/);
  });

  test.serial(`[docker] ${suite}: a certificate for raspi logs in to raspi's account through the relay (the laptop's key is in no authorized_keys), and not to garage's; garage's certificate logs in to garage and not to raspi`, async (t) => {
    // garage: the kit's drop-in for certificates, by the library (no enrollment: no Docker there), principal rtunnel-device:garage.
    const ssh = await new NodeSSH().connect({ host: w.garageIp, username: "pi", privateKeyPath: path.join(w.sshDir, "id_ed25519") });
    try {
      const garage = new Device(ssh, "garage", w.garageIp);
      await garage.useRoot();
      const found = await garage.sshd("pi");
      if (found.kind !== "ok") throw new Error(`garage's sshd: ${found.kind}`);
      const krl = await currentKrl(w.ca);
      const plan = planDropIn(found.state, "pi", dropInSections({ device: "garage", userCa: keyLine(w.ca.userCa, "rtunnel-user-ca"), krl: krl.bytes }, "pi"));
      t.deepEqual(plan.conflicts, []);
      await garage.changeSshd(plan);
    } finally {
      ssh.dispose();
    }
    t.is((await on(w.device, "grep -c laptop /home/pi/.ssh/authorized_keys")).stdout.trim(), "0");

    const forRaspi = await kitCert("laptop", ["raspi"]);
    await laptopWithCert(`${forRaspi.certificate}\n`);
    const from = (await deviceLog()).length;
    const r = await sshRaspi("hostname");
    t.is(r.stdout.trim(), "raspi", r.stderr);
    t.regex(await logSince(from), new RegExp(`Accepted publickey for pi from 127\\.0\\.0\\.1 port \\d+ ssh2: ED25519-CERT SHA256:\\S+ ID rtunnel:laptop:${forRaspi.record.serial} \\(serial ${forRaspi.record.serial}\\) CA ED25519 ${w.ca.userCa.fingerprint.replace(/[+/]/g, "\\$&")}`));

    // The same certificate on garage (from the home LAN, straight to its sshd): not its principal.
    const home = w.net.home.router;
    const tryGarage = async (cert: string) => {
      await on(home, "rm -rf /root/c && install -d -m 700 /root/c");
      await w.scope.exec(home, ["sh", "-c", "cat > /root/c/key && chmod 600 /root/c/key"], { input: await readFile(w.laptopKey.file) });
      await w.scope.exec(home, ["sh", "-c", "cat > /root/c/key-cert.pub"], { input: cert });
      return on(home, `ssh -i /root/c/key -o CertificateFile=/root/c/key-cert.pub -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null pi@${w.garageIp} hostname`);
    };
    const gFrom = (await deviceLog(w.garage)).length;
    const refused = await tryGarage(`${forRaspi.certificate}\n`);
    t.not(refused.code, 0);
    t.regex(refused.stderr, /Permission denied \(publickey,password\)/, "the LAN address offers what the device's own config says");
    t.regex(await logSince(gFrom, w.garage), /Certificate does not contain an authorized principal/);
    const forGarage = await kitCert("laptop", ["garage"]);
    const ok = await tryGarage(`${forGarage.certificate}\n`);
    t.is(ok.stdout.trim(), "garage", ok.stderr);

    // garage's certificate on raspi, through the relay: refused there for its principal.
    await laptopWithCert(`${forGarage.certificate}\n`);
    const rFrom = (await deviceLog()).length;
    const wrong = await sshRaspi();
    t.not(wrong.code, 0);
    t.regex(wrong.stderr, /Permission denied \(publickey\)/);
    t.regex(await logSince(rFrom), /Certificate does not contain an authorized principal/);
  });

  test.serial(`[docker] ${suite}: a certificate whose validity lies wholly in the past is refused by the device`, async (t) => {
    await laptopWithCert(await rawCert("laptop", ["rtunnel-device:raspi"], "20200101:20200102"));
    const from = (await deviceLog()).length;
    const r = await sshRaspi();
    t.not(r.code, 0);
    t.regex(r.stderr, /Permission denied \(publickey\)/);
    t.regex(await logSince(from), /Certificate invalid: expired/);
  });

  test.serial(`[docker] ${suite}: an agent holding many keys: IdentitiesOnly + CertificateFile offer the certificate and the key only and log in; without them the same agent runs into Too many authentication failures`, async (t) => {
    await laptopWithCert(`${(await kitCert("laptop", ["raspi"])).certificate}\n`);
    // Ten keys in an agent on the laptop; the control is the same device block without IdentitiesOnly/CertificateFile.
    const agent = await on(w.laptop, "rm -f /tmp/agent.sock; ssh-agent -a /tmp/agent.sock -s | sed -n 's/^SSH_AGENT_PID=\\([0-9]*\\).*/\\1/p'");
    const pid = agent.stdout.trim();
    t.teardown(() => on(w.laptop, sh`kill ${pid}`.text).then(() => undefined));
    await on(w.laptop, "for i in $(seq 10); do ssh-keygen -q -t ed25519 -N '' -f /tmp/k$i && SSH_AUTH_SOCK=/tmp/agent.sock ssh-add -q /tmp/k$i; done");
    t.is((await on(w.laptop, "SSH_AUTH_SOCK=/tmp/agent.sock ssh-add -l | wc -l")).stdout.trim(), "10");
    const withCert = await on(w.laptop, "SSH_AUTH_SOCK=/tmp/agent.sock ssh -o BatchMode=yes raspi hostname");
    t.is(withCert.stdout.trim(), "raspi", withCert.stderr);
    await on(w.laptop, sh`printf '%s\n' 'Host raspi-plain' '  HostName 127.0.0.1' ${`  Port ${w.port}`} '  User pi' '  ProxyJump rtunnel-relay' '  HostKeyAlias rtunnel-raspi' '  IdentityFile ~/.ssh/id_ed25519' '  UserKnownHostsFile ~/.ssh/known_hosts.rtunnel' >> /root/.ssh/config`.text);
    const control = await on(w.laptop, "SSH_AUTH_SOCK=/tmp/agent.sock ssh -o BatchMode=yes raspi-plain hostname");
    t.not(control.code, 0);
    t.regex(control.stderr, /Too many authentication failures/);
  });

  test.serial(`[docker] ${suite}: a revoked certificate: status lists raspi behind on the KRL until revoke-cert pushes it through the tunnel; then the device refuses that certificate and still takes another`, async (t) => {
    const revoked = await kitCert("alice", ["raspi"]);
    const kept = await kitCert("laptop", ["raspi"]);
    const local = await cli(["revoke-cert", revoked.record.serial, "--no-push", "--json"]);
    t.is(local.code, 0, local.stderr);
    const behind = await cli(["status", "--json"]);
    const entries = JSON.parse(behind.stdout) as { name: string; certificates?: { krlVersion: number | null; krlBehind: boolean } }[];
    t.like(entries.find((e) => e.name === "raspi")?.certificates, { krlVersion: 1, krlBehind: true });
    t.regex((await cli(["status"])).stderr, /^KRL behind \(not version 2\): raspi: offline when it was pushed; /m);

    const push = await cli(["revoke-cert", "--push", "--json"]);
    const pushed = JSON.parse(push.stdout) as { relay: { pushed: boolean }; devices: { done: string[]; behind: unknown[] } };
    t.deepEqual(pushed.devices, { done: ["raspi"], behind: [] }, push.stderr);
    t.is(push.code, 0, push.stderr);
    t.true(pushed.relay.pushed, "the relay took the KRL (set-krl)");
    t.is((await onDevice(`sha256sum < ${DEVICE_CA_PATHS.krl}`)).stdout.split(" ")[0], createHash("sha256").update(await readFile(w.ca.paths.krl)).digest("hex"));
    t.like((JSON.parse((await cli(["status", "--json"])).stdout) as typeof entries).find((e) => e.name === "raspi")?.certificates, { krlVersion: 2, krlBehind: false });
    t.is((await records()).raspi?.krlVersion, 2);

    await laptopWithCert(`${revoked.certificate}\n`);
    const from = (await deviceLog()).length;
    const r = await sshRaspi();
    t.not(r.code, 0);
    t.regex(await logSince(from), /Authentication key ED25519-CERT SHA256:\S+ revoked by file \/etc\/ssh\/rtunnel_revoked\.krl/);
    await laptopWithCert(`${kept.certificate}\n`);
    const ok = await sshRaspi("hostname");
    t.is(ok.stdout.trim(), "raspi", ok.stderr);
  });

  test.serial(`[docker] ${suite}: a device host key changed without a new certificate is refused by the laptop (and by the operator's own connections, which pin the certified key); a legitimate re-key, enrolled again, is trusted with no change on the laptop`, async (t) => {
    const sockets = await listenerSockets();
    await onDevice("rm /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && kill -HUP $(cat /run/sshd.pid)");
    await waitFor("raspi's sshd to reload with a new key", async () => !["", sockets].includes(await listenerSockets()), { tries: 240, intervalMs: 250 });
    const newFp = (await onDevice("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")).stdout.split(" ")[1]!;
    // Real sshd says so in `sshd -t` (what the change script's check of a host certificate reads), and carries on.
    t.regex((await onDevice("sshd -t 2>&1")).stdout, /rtunnel_host_ed25519_key-cert\.pub/);
    const r = await sshRaspi();
    t.not(r.code, 0);
    t.regex(r.stderr, /Host key verification failed/);
    const again = await enroll([], { pin: false });
    t.is(again.code, 3, again.stderr);
    oneLine(t, again.stderr, new RegExp(`^rtunnel: the device at \\S+ shows host key ${newFp.replace(/[+/]/g, "\\$&")}, not the pinned ${w.deviceFp.replace(/[+/]/g, "\\$&")}: if the device was reinstalled, re-run with --device-host-key \\S+$`));

    // The operator checks the new key and enrolls again with it: a new host certificate, and the
    // laptop, whose known_hosts names the CA and no key, trusts it as it is (an old pin would now cry "changed").
    const known = await on(w.laptop, "cat /root/.ssh/known_hosts.rtunnel");
    const rekey = await enroll(["--device-host-key", newFp, "--json"], { pin: false });
    t.is(rekey.code, 0, rekey.stderr);
    const result = JSON.parse(rekey.stdout) as { certificates: { hostCert: string; reason: string } };
    t.is(result.certificates.hostCert, "signed");
    t.regex(result.certificates.reason, /for another key .*the host key changed/);
    w.deviceFp = newFp;
    t.is((await onDevice("sshd -t 2>&1")).stdout, "");
    const ok = await sshRaspi("hostname");
    t.is(ok.stdout.trim(), "raspi", ok.stderr);
    t.is((await on(w.laptop, "cat /root/.ssh/known_hosts.rtunnel")).stdout, known.stdout, "the laptop's files did not change");
  });

  test.serial(`[docker] ${suite}: raspi's clock an hour behind (libfaketime in its sshd only): enrollment says so in one line, a certificate issued now is refused there as not yet valid, and status explains it; two hours ahead, an hour's certificate is over there; with the clock right again it logs in`, async (t) => {
    const real = Math.floor(Date.now() / 1000);
    await onDevice("echo -1h > /etc/rtunnel-faketime");
    t.teardown(() => onDevice("rm -f /etc/rtunnel-faketime").then(() => undefined));
    t.true(Math.abs(Number((await onDevice("date +%s")).stdout) - real) < 600, "the device's own clock (docker exec) is not moved");
    const r = await enroll(["--json"]);
    t.is(r.code, 0, r.stderr);
    const warning = /^warning: the device's clock is (\d+) s behind: certificates issued now are not yet valid there; fix its clock \(timedatectl \/ NTP\)$/m.exec(r.stderr);
    t.truthy(warning, r.stderr);
    t.true(Math.abs(Number(warning?.[1]) - 3600) < 60, warning?.[0]);
    const result = JSON.parse(r.stdout) as { certificates: { clock: { offsetSeconds: number; problem?: string } } };
    t.regex(result.certificates.clock.problem ?? "", /^the device's clock is \d+ s behind/);
    t.true((await records()).raspi?.clock !== undefined);

    const fresh = await kitCert("laptop", ["raspi"]);
    await laptopWithCert(`${fresh.certificate}\n`);
    const from = (await deviceLog()).length;
    const refused = await sshRaspi();
    t.not(refused.code, 0);
    t.regex(refused.stderr, /Permission denied \(publickey\)/);
    t.regex(await logSince(from), /Certificate invalid: not yet valid/);
    const status = await cli(["status"]);
    t.regex(status.stderr, /^warning: raspi: the device's clock is \d+ s behind: certificates issued now are not yet valid there; fix its clock \(timedatectl \/ NTP\) \(measured \S+\); a certificate login refused there is refused for that$/m);

    // Two hours ahead: the same one-line warning, the other way; an hour's certificate is over there.
    await onDevice("echo +2h > /etc/rtunnel-faketime");
    const ahead = await enroll();
    t.is(ahead.code, 0, ahead.stderr);
    t.regex(ahead.stderr, /^warning: the device's clock is \d+ s ahead: certificates expire \d+ s early there \(one shorter than that is never valid\); fix its clock \(timedatectl \/ NTP\)$/m);
    const aFrom = (await deviceLog()).length;
    t.not((await sshRaspi()).code, 0);
    t.regex(await logSince(aFrom), /Certificate invalid: expired/);

    await onDevice("rm -f /etc/rtunnel-faketime");
    const fixed = await enroll();
    t.is(fixed.code, 0, fixed.stderr);
    t.notRegex(fixed.stderr, /warning: the device's clock/);
    t.notRegex((await cli(["status"])).stderr, /clock/);
    const ok = await sshRaspi("hostname");
    t.is(ok.stdout.trim(), "raspi", ok.stderr);
  });

  test.serial(`[docker] ${suite}: a host certificate with under 14 days left: status warns; enrolling again renews it for 90 days, and laptops trust the new one as they are`, async (t) => {
    // A certificate of the host CA for raspi's key with 10 days left, in place of its own (as one issued 80 days ago would be).
    const dir = await mkdtemp(path.join(w.tmp, "short-"));
    await writeFile(path.join(dir, "key.pub"), (await onDevice("cat /etc/ssh/ssh_host_ed25519_key.pub")).stdout);
    await run("ssh-keygen", ["-q", "-U", "-s", w.ca.paths.hostCaPub, "-h", "-I", "rtunnel:raspi:7", "-n", "rtunnel-raspi", "-V", "-80d:+10d", "-z", "7", path.join(dir, "key.pub")], { env: agentEnv() });
    const short = await readFile(path.join(dir, "key-cert.pub"), "utf8");
    const sockets = await listenerSockets();
    await w.scope.exec(w.device, ["sh", "-c", `cat > ${DEVICE_CA_PATHS.hostCert} && kill -HUP $(cat /run/sshd.pid)`], { input: short });
    await waitFor("raspi's sshd to reload with the short certificate", async () => !["", sockets].includes(await listenerSockets()), { tries: 240, intervalMs: 250 });
    const info = await inspectCertificate({ text: short });
    await updateDeviceRecord(w.ca.paths, "raspi", { hostCert: { serial: "7", validAfter: info.validAfter!.toISOString(), validBefore: info.validBefore!.toISOString() } });
    const known = await on(w.laptop, "cat /root/.ssh/known_hosts.rtunnel");
    t.regex((await on(w.laptop, "ssh -v -o BatchMode=yes raspi true")).stderr, /Server host certificate: \S+ SHA256:\S+, serial 7 /);

    const status = await cli(["status"]);
    t.regex(status.stderr, /^warning: raspi's host certificate expires in (9|10) days \(.*\): enroll it again to renew$/m);
    t.regex(status.stdout, /^raspi\s+device\s+\S+\s+\d+\s+(9|10)d \(renew!\)\s/m);

    const r = await enroll(["--json"]);
    t.is(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as { certificates: { hostCert: string; reason: string; serial: string } };
    t.is(result.certificates.hostCert, "signed");
    t.regex(result.certificates.reason, /^its host certificate has (9|10) days left \(renewed under 30\)$/);
    const record = (await records()).raspi!;
    t.is(record.hostCert?.serial, result.certificates.serial);
    t.is(Date.parse(record.hostCert!.validBefore) - Date.parse(record.hostCert!.validAfter), (HOST_CERT_LIFETIME.seconds + BACKDATE_SECONDS) * 1000);
    t.notRegex((await cli(["status"])).stderr, /host certificate/);
    const v = await on(w.laptop, "ssh -v -o BatchMode=yes raspi hostname");
    t.is(v.stdout.trim(), "raspi", v.stderr);
    t.regex(v.stderr, new RegExp(`Server host certificate: \\S+ SHA256:\\S+, serial ${result.certificates.serial} `));
    t.is((await on(w.laptop, "cat /root/.ssh/known_hosts.rtunnel")).stdout, known.stdout, "the laptop's files did not change");
  });

  test.serial(`[docker] ${suite}: enrolling again changes nothing: the device's files, its running sshd (not reloaded), the laptop's files and the CA's records`, async (t) => {
    const before = await snapshot();
    const r = await enroll();
    t.is(r.code, 0, r.stderr);
    t.regex(r.stderr, /raspi was already enrolled: nothing changed/);
    t.deepEqual(await snapshot(), before);
  });

  test.serial(`[docker] ${suite}: revoke-device removes the drop-in and, after the reload, every certificate file; the laptop's CA line and the CA's record of raspi go`, async (t) => {
    const r = await cli(["revoke-device", "raspi", "--json"]);
    t.is(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as { deviceSshd: string[] };
    for (const f of [SSHD_DROP_IN, DEVICE_CA_PATHS.userCa, DEVICE_CA_PATHS.krl, "/etc/ssh/rtunnel_principals/pi", DEVICE_CA_PATHS.hostCert]) t.true(result.deviceSshd.includes(f), f);
    t.is((await onDevice(`ls -d ${SSHD_DROP_IN} ${DEVICE_CA_PATHS.userCa} ${DEVICE_CA_PATHS.krl} ${DEVICE_CA_PATHS.principalsDir} ${DEVICE_CA_PATHS.hostCert} 2>/dev/null | wc -l`)).stdout.trim(), "0");
    t.regex((await onDevice("sshd -T")).stdout, /^trustedusercakeys none$/m);
    t.is((await onDevice("sshd -t 2>&1")).stdout, "");
    t.notRegex(await readFile(path.join(w.sshDir, "known_hosts.rtunnel"), "utf8"), /rtunnel-raspi/);
    t.is((await records()).raspi, undefined);
  });
}
