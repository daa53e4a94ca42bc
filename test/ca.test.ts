// The fleet CA with the real tools (provision/ca/): ssh-keygen makes, signs and reads back,
// and a real ssh-agent, started by each test in its own temp directory, holds the CA. Every
// test uses its own temp ssh dir: the real ~/.ssh is never touched. No Docker.
import { existsSync } from "node:fs";
import { chmod, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { BACKDATE_SECONDS, caPaths, HOST_CERT_LIFETIME, parseKeyId, validityWindow } from "../lib/contract/ca.ts";
import { parsePublicKey, type PublicKey } from "../lib/keys.ts";
import { run } from "../lib/proc.ts";
import { withAskpass } from "../provision/ca/askpass.ts";
import { addCaToAgent, agentKeys, initCa, inspectCertificate, loadCa, requireCa, signHostKey, signUserCert, type Ca } from "../provision/ca/ca.ts";
import { krlQueryArgv } from "../provision/ca/keygen.ts";
import { readIssued, readRevoked, updateDeviceRecord, readDeviceRecords } from "../provision/ca/records.ts";
import { currentKrl, krlVersion, revoke } from "../provision/ca/revocation.ts";
import { ExitError } from "../provision/errors.ts";
import { startAgent, tempDir } from "./bed/local.ts";

const PASSPHRASE = "correct horse battery staple";


async function newCa(t: ExecutionContext, o: { rsa?: boolean } = {}): Promise<{ sshDir: string; ca: Ca }> {
  const sshDir = path.join(await tempDir(t, "ssh"), "ssh");
  await initCa({ sshDir, passphrase: PASSPHRASE, algorithm: o.rsa ? "rsa" : "ed25519" });
  return { sshDir, ca: await requireCa(sshDir) };
}

async function loadedCa(t: ExecutionContext, o: { rsa?: boolean } = {}) {
  const { sshDir, ca } = await newCa(t, o);
  const sock = await startAgent(t);
  await addCaToAgent(ca, { passphrase: PASSPHRASE, sock });
  return { sshDir, ca, sock };
}

/** A laptop's (or a device's) key pair made by ssh-keygen, unencrypted, in a temp dir. */
async function keyPair(t: ExecutionContext, name = "id_ed25519"): Promise<{ file: string; pub: PublicKey }> {
  const dir = await tempDir(t, "key");
  const file = path.join(dir, name);
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", file]);
  return { file, pub: parsePublicKey((await readFile(`${file}.pub`, "utf8")).trim(), "test key") };
}

async function snapshot(dir: string): Promise<Record<string, { mode: number; text: string }>> {
  const out: Record<string, { mode: number; text: string }> = {};
  for (const f of (await readdir(dir)).sort()) {
    const st = await stat(path.join(dir, f));
    out[f] = { mode: st.mode & 0o777, text: (await readFile(path.join(dir, f))).toString("base64") };
  }
  return out;
}

test("ca init makes both CAs encrypted, 0600 in a 0700 directory, with an empty KRL; a second init changes nothing", async (t) => {
  const sshDir = path.join(await tempDir(t, "ssh"), "ssh");
  const first = await initCa({ sshDir, passphrase: PASSPHRASE });
  t.true(first.created);
  t.is(first.algorithm, "ed25519");
  const p = caPaths(sshDir);
  t.is((await stat(p.dir)).mode & 0o777, 0o700);
  for (const f of [p.userCa, p.hostCa]) t.is((await stat(f)).mode & 0o777, 0o600, f);
  const before = await snapshot(p.dir);
  t.deepEqual(Object.keys(before), ["host_ca", "host_ca.pub", "revoked.json", "revoked.krl", "user_ca", "user_ca.pub"]);
  t.deepEqual(await readdir(sshDir), ["rtunnel-ca"], "no staging directory left behind");
  t.deepEqual(await readRevoked(p), { version: 1, revoked: [] });
  t.is(await krlVersion(p.krl), 1);
  t.true(first.sshAdd.startsWith("ssh-add ") && first.sshAdd.includes(p.userCa) && first.sshAdd.includes(p.hostCa));

  // Encrypted: ssh-keygen reads the private half with the passphrase only (given through askpass).
  const readPrivate = (pass: string, file: string) => withAskpass(pass, (env) => run("ssh-keygen", ["-y", "-f", file], { env, check: false }));
  for (const [file, pub] of [[p.userCa, p.userCaPub], [p.hostCa, p.hostCaPub]] as const) {
    const ok = await readPrivate(PASSPHRASE, file);
    t.is(ok.code, 0, ok.stderr);
    t.is(parsePublicKey(ok.stdout.trim()).fingerprint, parsePublicKey((await readFile(pub, "utf8")).trim()).fingerprint);
    t.not((await readPrivate("wrong passphrase", file)).code, 0);
  }
  t.true((await readFile(p.userCa, "utf8")).includes("BEGIN OPENSSH PRIVATE KEY"));

  const second = await initCa({ sshDir, passphrase: "another passphrase" });
  t.false(second.created);
  t.is(second.userCa.fingerprint, first.userCa.fingerprint);
  t.is(second.hostCa.fingerprint, first.hostCa.fingerprint);
  t.deepEqual(await snapshot(p.dir), before);
  // Asking for the other algorithm is refused, and changes nothing either.
  await t.throwsAsync(initCa({ sshDir, passphrase: PASSPHRASE, algorithm: "rsa" }), { instanceOf: ExitError, message: /is ed25519, not rsa/ });
  t.deepEqual(await snapshot(p.dir), before);
});

test("ca init refuses a CA directory that holds something else, and an incomplete CA, changing nothing", async (t) => {
  const sshDir = path.join(await tempDir(t, "ssh"), "ssh");
  const p = caPaths(sshDir);
  await initCa({ sshDir, passphrase: PASSPHRASE });
  await rm(p.hostCa);
  await t.throwsAsync(loadCa(sshDir), { instanceOf: ExitError, message: /incomplete \(missing .*host_ca\)/ });
  await t.throwsAsync(initCa({ sshDir, passphrase: PASSPHRASE }), { instanceOf: ExitError, message: /incomplete/ });
  const other = path.join(await tempDir(t, "ssh"), "ssh");
  await run("mkdir", ["-p", caPaths(other).dir]);
  await writeFile(caPaths(other).issued, "");
  await t.throwsAsync(initCa({ sshDir: other, passphrase: PASSPHRASE }), { instanceOf: ExitError, message: /exists without a CA in it/ });
  t.deepEqual(await readdir(caPaths(other).dir), ["issued.jsonl"]);
  await t.throwsAsync(initCa({ sshDir: path.join(await tempDir(t, "ssh"), "ssh"), passphrase: "" }), { message: /never made without a passphrase/ });
});

test("a user certificate carries the grant's principals, its key id and serial, and a backdated window that ssh-keygen -L agrees with", async (t) => {
  const { ca, sock } = await loadedCa(t);
  const laptop = await keyPair(t);
  const now = new Date();
  const signed = await signUserCert({ ca, key: laptop.pub, name: "alice", devices: ["pi2", "pi1", "pi2"], lifetimeSeconds: 8 * 3600, now, agentSock: sock });
  const w = validityWindow(now, 8 * 3600);
  t.deepEqual(signed.info.principals, ["rtunnel-grant:pi1+pi2", "rtunnel-device:pi1", "rtunnel-device:pi2"]);
  t.is(signed.info.kind, "user");
  t.is(signed.info.keyFingerprint, laptop.pub.fingerprint);
  t.is(signed.info.caFingerprint, ca.userCa.fingerprint);
  t.is(signed.info.signatureAlgorithm, "ssh-ed25519");
  t.deepEqual(parseKeyId(signed.info.keyId), { name: "alice", serial: BigInt(signed.info.serial) });
  t.is(signed.info.validAfter?.getTime(), w.validAfter.getTime());
  t.is(signed.info.validBefore?.getTime(), w.validBefore.getTime());
  t.is(Math.floor(now.getTime() / 1000) - signed.info.validAfter!.getTime() / 1000, BACKDATE_SECONDS);
  t.true(signed.certificate.startsWith("ssh-ed25519-cert-v01@openssh.com "));

  // ssh-keygen -L on the written file, independently of the signing code's own check.
  const file = path.join(path.dirname(laptop.file), "id_ed25519-cert.pub");
  await writeFile(file, `${signed.certificate}\n`);
  const listing = await run("ssh-keygen", ["-L", "-f", file], { env: { ...process.env, TZ: "UTC" } });
  t.regex(listing.stdout, /Type: ssh-ed25519-cert-v01@openssh.com user certificate/);
  t.regex(listing.stdout, new RegExp(`Key ID: "rtunnel:alice:${signed.info.serial}"`));
  t.regex(listing.stdout, new RegExp(`Serial: ${signed.info.serial}\\n`));
  t.regex(listing.stdout, new RegExp(`Valid: from ${w.validAfter.toISOString().slice(0, 19)} to ${w.validBefore.toISOString().slice(0, 19)}`));
  t.regex(listing.stdout, /Principals: \n\s+rtunnel-grant:pi1\+pi2\n\s+rtunnel-device:pi1\n\s+rtunnel-device:pi2\n/);
  t.deepEqual(await inspectCertificate({ file }), signed.info);

  const records = await readIssued(ca.paths);
  t.is(records.length, 1);
  t.deepEqual(records[0], signed.record);
  t.like(records[0], { type: "user", name: "alice", serial: signed.info.serial, keyFingerprint: laptop.pub.fingerprint, validAfter: w.validAfter.toISOString() });
});

test("a host certificate names the device by its HostKeyAlias and lasts 90 days from 5 minutes back", async (t) => {
  const { ca, sock } = await loadedCa(t);
  const device = await keyPair(t, "ssh_host_ed25519_key");
  const now = new Date();
  const signed = await signHostKey({ ca, device: "raspi", hostKey: device.pub, now, agentSock: sock });
  t.is(signed.info.kind, "host");
  t.deepEqual(signed.info.principals, ["rtunnel-raspi"]);
  t.is(signed.info.caFingerprint, ca.hostCa.fingerprint);
  t.is(signed.info.keyId, `rtunnel:raspi:${signed.info.serial}`);
  const w = validityWindow(now, HOST_CERT_LIFETIME.seconds);
  t.is(signed.info.validBefore?.getTime(), w.validBefore.getTime());
  t.is(signed.info.validAfter?.getTime(), w.validAfter.getTime());
  t.is((await readIssued(ca.paths))[0]?.type, "host");
  // The caller records it once installed; a record keeps what it had.
  await updateDeviceRecord(ca.paths, "raspi", { krlVersion: 1 });
  await updateDeviceRecord(ca.paths, "raspi", { hostCert: { serial: signed.record.serial, validAfter: signed.record.validAfter, validBefore: signed.record.validBefore } });
  t.deepEqual(await readDeviceRecords(ca.paths), { raspi: { krlVersion: 1, hostCert: { serial: signed.record.serial, validAfter: w.validAfter.toISOString(), validBefore: w.validBefore.toISOString() } } });
});

test("signing without the CA in ssh-agent is one line that says how to load it, and issues nothing", async (t) => {
  const { ca } = await newCa(t);
  const laptop = await keyPair(t);
  const sign = (agentSock: string | undefined) => signUserCert({ ca, key: laptop.pub, name: "alice", devices: ["pi1"], lifetimeSeconds: 3600, agentSock });
  const oneLine = (e: Error | undefined) => {
    t.true(e instanceof ExitError);
    t.false(e!.message.includes("\n"), e!.message);
    return e!.message;
  };
  // No agent at all: SSH_AUTH_SOCK unset.
  const saved = process.env.SSH_AUTH_SOCK;
  delete process.env.SSH_AUTH_SOCK;
  try {
    t.regex(oneLine(await t.throwsAsync(sign(undefined))), /no ssh-agent: SSH_AUTH_SOCK is not set/);
  } finally {
    if (saved !== undefined) process.env.SSH_AUTH_SOCK = saved;
  }
  // An agent that is not there.
  t.regex(oneLine(await t.throwsAsync(sign(path.join(os.tmpdir(), "rtunnel-no-such-agent.sock")))), /can't reach ssh-agent at /);
  // An agent without the CA.
  const sock = await startAgent(t);
  t.is(oneLine(await t.throwsAsync(sign(sock))), `the user CA (${ca.userCa.fingerprint}) is not loaded in ssh-agent: run ssh-add ${ca.paths.userCa}`);
  // An agent holding only the host CA signs no user certificate either.
  await withAskpass(PASSPHRASE, (env) => run("ssh-add", [ca.paths.hostCa], { env: { ...env, SSH_AUTH_SOCK: sock } }));
  t.regex(oneLine(await t.throwsAsync(sign(sock))), /the user CA .* is not loaded in ssh-agent/);
  t.deepEqual(await readIssued(ca.paths), []);
});

test("a wrong passphrase does not load the CA into ssh-agent, in one line", async (t) => {
  const { ca } = await newCa(t);
  const sock = await startAgent(t);
  const e = await t.throwsAsync(addCaToAgent(ca, { passphrase: "not the passphrase", sock }), { instanceOf: ExitError });
  t.is(e?.message, "ssh-add could not load the CA: wrong passphrase");
  t.deepEqual(await agentKeys(sock), []);
  await addCaToAgent(ca, { passphrase: PASSPHRASE, sock, lifetimeSeconds: 600 });
  t.deepEqual((await agentKeys(sock)).map((k) => k.fingerprint).sort(), [ca.userCa.fingerprint, ca.hostCa.fingerprint].sort());
});

test("a revoked serial is in the KRL (ssh-keygen -Q says REVOKED) and the others are not; revoking again changes nothing", async (t) => {
  const { ca, sock } = await loadedCa(t);
  const dir = await tempDir(t, "certs");
  const certFile = async (name: string) => {
    const k = await keyPair(t);
    const s = await signUserCert({ ca, key: k.pub, name, devices: ["pi1"], lifetimeSeconds: 3600, agentSock: sock });
    const file = path.join(dir, `${name}-${s.info.serial}-cert.pub`);
    await writeFile(file, `${s.certificate}\n`);
    return { file, serial: s.info.serial, keyId: s.info.keyId };
  };
  const query = (file: string) => run("ssh-keygen", krlQueryArgv(ca.paths.krl, file), { check: false });
  const alice = await certFile("alice");
  const bob = await certFile("bob");
  const bob2 = await certFile("bob");
  // The empty KRL of a new CA revokes nothing.
  for (const c of [alice, bob, bob2]) t.is((await query(c.file)).code, 0);

  const r = await revoke(ca, alice.serial);
  t.deepEqual(r.target, { kind: "serial", serial: alice.serial });
  t.deepEqual(r.added.map((a) => [a.serial, a.keyId, a.name]), [[alice.serial, alice.keyId, "alice"]]);
  t.is(r.krl.version, 2);
  t.is(await krlVersion(ca.paths.krl), 2);
  const q = await query(alice.file);
  t.is(q.code, 1);
  t.regex(q.stdout, /REVOKED/);
  t.is((await query(bob.file)).code, 0);
  const listing = (await run("ssh-keygen", ["-Q", "-l", "-f", ca.paths.krl])).stdout;
  t.regex(listing, new RegExp(`^serial: ${alice.serial}$`, "m"));
  t.regex(listing, new RegExp(`^id: ${alice.keyId}$`, "m"));
  t.regex(listing, new RegExp(`^# CA key ssh-ed25519 ${ca.userCa.fingerprint.replace(/[+/]/g, "\\$&")}$`, "m"));

  const krlBefore = await readFile(ca.paths.krl);
  const again = await revoke(ca, alice.serial);
  t.deepEqual(again.added, []);
  t.is(again.krl.version, 2);
  t.deepEqual(await readFile(ca.paths.krl), krlBefore, "the KRL was not rendered again");

  // A name revokes every unexpired certificate issued to it.
  const byName = await revoke(ca, "bob");
  t.deepEqual(byName.added.map((a) => a.serial).sort(), [bob.serial, bob2.serial].sort());
  t.is(byName.krl.version, 3);
  for (const c of [alice, bob, bob2]) t.is((await query(c.file)).code, 1, c.keyId);
  t.deepEqual((await readRevoked(ca.paths)).revoked.map((x) => x.serial).sort(), [alice.serial, bob.serial, bob2.serial].sort());
});

test("currentKrl renders the KRL again when it is missing or behind revoked.json (a crash between the two writes)", async (t) => {
  const { ca, sock } = await loadedCa(t);
  const k = await keyPair(t);
  const s = await signUserCert({ ca, key: k.pub, name: "alice", devices: ["pi1"], lifetimeSeconds: 3600, agentSock: sock });
  await revoke(ca, s.info.serial);
  const v2 = await readFile(ca.paths.krl);
  await rm(ca.paths.krl);
  const krl = await currentKrl(ca);
  t.is(krl.version, 2);
  t.is(krl.revoked, 1);
  t.is(await krlVersion(ca.paths.krl), 2);
  t.is(krl.bytes.length, v2.length);
  // A source one version ahead of its KRL (written, then the crash).
  const list = await readRevoked(ca.paths);
  await writeFile(ca.paths.revoked, JSON.stringify({ ...list, version: 3 }));
  t.is((await currentKrl(ca)).version, 3);
  t.is(await krlVersion(ca.paths.krl), 3);
});

test("an RSA CA signs user and host certificates with rsa-sha2-512", async (t) => {
  const { ca, sock } = await loadedCa(t, { rsa: true });
  t.is(ca.algorithm, "rsa");
  t.is(ca.userCa.type, "ssh-rsa");
  t.is(ca.hostCa.type, "ssh-rsa");
  const k = await keyPair(t);
  const user = await signUserCert({ ca, key: k.pub, name: "alice", devices: ["pi1"], lifetimeSeconds: 3600, agentSock: sock });
  const host = await signHostKey({ ca, device: "raspi", hostKey: k.pub, agentSock: sock });
  for (const s of [user, host]) {
    t.is(s.info.caKeyType, "RSA");
    t.is(s.info.signatureAlgorithm, "rsa-sha2-512");
  }
  // The KRL is scoped to the RSA user CA too.
  await revoke(ca, user.info.serial);
  const file = path.join(path.dirname(k.file), "id_ed25519-cert.pub");
  await writeFile(file, `${user.certificate}\n`);
  t.is((await run("ssh-keygen", krlQueryArgv(ca.paths.krl, file), { check: false })).code, 1);
});

test("a passphrase file others may read is refused, and the passphrase never reaches an argv", async (t) => {
  const { obtainPassphrase } = await import("../provision/ca/askpass.ts");
  const dir = await tempDir(t, "pass");
  const file = path.join(dir, "pass");
  await writeFile(file, `${PASSPHRASE}\n`, { mode: 0o644 });
  await chmod(file, 0o644);
  await t.throwsAsync(obtainPassphrase({ file }), { message: /may be read by others \(mode 644\): chmod 600/ });
  await chmod(file, 0o600);
  t.is(await obtainPassphrase({ file }), PASSPHRASE);
  t.is(await obtainPassphrase({ env: { RTUNNEL_CA_PASSPHRASE_FILE: file } }), PASSPHRASE);
  await t.throwsAsync(obtainPassphrase({ env: {} }), { message: /give --passphrase-file FILE or set RTUNNEL_CA_PASSPHRASE_FILE/ });
  // The askpass script holds no secret: it prints it from its environment.
  await withAskpass(PASSPHRASE, async (env) => {
    const script = await readFile(env.SSH_ASKPASS!, "utf8");
    t.false(script.includes(PASSPHRASE));
    t.is((await run(env.SSH_ASKPASS!, [], { env })).stdout, `${PASSPHRASE}\n`);
  });
});

test("signing needs only ssh-agent and the CA's public half: with the private halves moved away, certificates are still signed", async (t) => {
  const { ca, sock } = await loadedCa(t);
  const away = await tempDir(t, "away");
  for (const f of [ca.paths.userCa, ca.paths.hostCa]) await run("mv", [f, path.join(away, path.basename(f))]);
  const k = await keyPair(t);
  const user = await signUserCert({ ca, key: k.pub, name: "alice", devices: ["pi1"], lifetimeSeconds: 3600, agentSock: sock });
  const host = await signHostKey({ ca, device: "raspi", hostKey: k.pub, agentSock: sock });
  t.is(user.info.caFingerprint, ca.userCa.fingerprint);
  t.is(host.info.caFingerprint, ca.hostCa.fingerprint);
  t.false(existsSync(ca.paths.userCa) || existsSync(ca.paths.hostCa));
});
