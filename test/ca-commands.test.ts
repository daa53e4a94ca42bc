// The CA's commands (`ca`, `grant`, `login`, `revoke-cert`): their functions against a temp
// ssh dir holding a laptop side as enrollment writes it, and the CLI itself as a process (exit
// codes, one-line errors, --json, --help). A real ssh-agent started by each test holds the
// CA; the real ~/.ssh is never touched (HOME too is a temp dir for the CLI's processes). No
// relay and no device run here: the pushes' own tests come with the relay and device parts.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { caPaths, userCertPrincipals } from "../lib/contract/ca.ts";
import { keyLine, parsePublicKey, type PublicKey } from "../lib/keys.ts";
import { repoRoot } from "../lib/paths.ts";
import { run } from "../lib/proc.ts";
import { addCaToAgent, initCa, inspectCertificate, requireCa } from "../provision/ca/ca.ts";
import { readIssued, readRevoked } from "../provision/ca/records.ts";
import { caInit, caInspect, caLoad, caShow } from "../provision/commands/ca.ts";
import { grant, login } from "../provision/commands/grant.ts";
import { revokeCert } from "../provision/commands/revokeCert.ts";
import { ExitError } from "../provision/errors.ts";
import { emptyModel, renderFragment, renderKnown, withDevice, withRelay } from "../provision/laptop/model.ts";
import { startAgent, tempDir } from "./bed/local.ts";

const PASSPHRASE = "correct horse battery staple";


async function keyPair(dir: string, name: string): Promise<{ file: string; pub: PublicKey }> {
  const file = path.join(dir, name);
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file]);
  return { file, pub: parsePublicKey((await readFile(`${file}.pub`, "utf8")).trim()) };
}

/**
 * An operator's machine: a temp home with .ssh holding its identity, a laptop side with the
 * relay hop and devices pi1 and pi2 (as enrollment writes it), relay facts, a CA loaded in a
 * fresh agent, and a passphrase file.
 */
async function operator(t: ExecutionContext, o: { load?: boolean } = {}) {
  const home = await tempDir(t, "home");
  const sshDir = path.join(home, ".ssh");
  await mkdir(path.join(sshDir, "config.d"), { recursive: true, mode: 0o700 });
  const identity = await keyPair(sshDir, "id_ed25519");
  const hostKeys = await keyPair(home, "host");
  const relayKey = await keyPair(home, "relay");
  let model = withRelay(emptyModel({ identityFile: "~/.ssh/id_ed25519", knownHostsFile: "~/.ssh/known_hosts.rtunnel" }), { host: "127.0.0.1", port: 12345, hostKey: relayKey.pub });
  model = withDevice(model, { name: "pi1", port: 20001, user: "pi", hostKey: hostKeys.pub });
  model = withDevice(model, { name: "pi2", port: 20002, user: "root", hostKey: hostKeys.pub });
  await writeFile(path.join(sshDir, "config.d", "rtunnel"), renderFragment(model));
  await writeFile(path.join(sshDir, "known_hosts.rtunnel"), renderKnown(model));
  // Port 1 on loopback: nothing listens, so a push fails fast and says so.
  const relayFile = path.join(home, "relay.json");
  await writeFile(relayFile, JSON.stringify({ host: "127.0.0.1", port: 1, hostKey: keyLine(relayKey.pub) }));
  const passFile = path.join(home, "ca-pass");
  await writeFile(passFile, `${PASSPHRASE}\n`, { mode: 0o600 });
  await initCa({ sshDir, passphrase: PASSPHRASE, home });
  const ca = await requireCa(sshDir);
  const sock = await startAgent(t);
  if (o.load ?? true) await addCaToAgent(ca, { passphrase: PASSPHRASE, sock });
  const other = await keyPair(await tempDir(t, "other"), "id_ed25519");
  return { home, sshDir, identity, ca, sock, relayFile, passFile, other, hostKey: hostKeys.pub };
}

test("grant writes FILE-cert.pub beside the key, for the named devices, and records it", async (t) => {
  const op = await operator(t);
  const r = await grant({ sshDir: op.sshDir, home: op.home, name: "alice", key: `${op.other.file}.pub`, devices: ["pi2", "pi1"], lifetime: "30m", agentSock: op.sock });
  t.is(r.certificateFile, `${op.other.file}-cert.pub`);
  t.deepEqual(r.written, [r.certificateFile]);
  t.deepEqual(r.devices, ["pi1", "pi2"]);
  t.deepEqual(r.principals, userCertPrincipals(["pi1", "pi2"]));
  t.is(r.lifetime, "30m");
  t.is(Date.parse(r.validBefore) - Date.parse(r.validAfter), 35 * 60 * 1000);
  const info = await inspectCertificate({ file: r.certificateFile });
  t.is(info.keyId, r.keyId);
  t.is(info.keyFingerprint, op.other.pub.fingerprint);
  t.deepEqual(info.principals, r.principals);
  t.deepEqual((await readIssued(op.ca.paths)).map((c) => c.keyId), [r.keyId]);
  // --all: every device enrolled from this laptop.
  const all = await grant({ sshDir: op.sshDir, home: op.home, name: "alice", key: `${op.other.file}.pub`, devices: "all", agentSock: op.sock });
  t.deepEqual(all.devices, ["pi1", "pi2"]);
  t.is(all.lifetime, "8h");
  t.not(all.serial, r.serial);
});

test("grant refuses, before signing anything, unknown devices, lifetimes out of bounds, private keys and another CA's certificate file", async (t) => {
  const op = await operator(t);
  const base = { sshDir: op.sshDir, home: op.home, name: "alice", key: `${op.other.file}.pub`, devices: ["pi1"], agentSock: op.sock };
  await t.throwsAsync(grant({ ...base, devices: ["pi3"] }), { instanceOf: ExitError, message: /no device pi3 in this laptop's/ });
  await t.throwsAsync(grant({ ...base, lifetime: "4m" }), { message: /between 5m and 90d/ });
  await t.throwsAsync(grant({ ...base, lifetime: "91d" }), { message: /between 5m and 90d/ });
  await t.throwsAsync(grant({ ...base, lifetime: "8 hours" }), { message: /like 30m, 8h or 7d/ });
  await t.throwsAsync(grant({ ...base, key: op.other.file }), { instanceOf: ExitError, message: /is a PRIVATE key/ });
  await t.throwsAsync(grant({ ...base, name: "Alice" }), { message: /grant name must be/ });
  // A certificate beside the key from another CA (a company's, say) stays as it is.
  const foreignCa = await keyPair(await tempDir(t, "foreign"), "ca");
  await run("ssh-keygen", ["-q", "-s", foreignCa.file, "-I", "corp", "-n", "me", "-V", "-5m:+1h", `${op.other.file}.pub`]);
  const foreign = await readFile(`${op.other.file}-cert.pub`, "utf8");
  await t.throwsAsync(grant(base), { instanceOf: ExitError, message: /holds a certificate from another CA/ });
  t.like(await caInspect({ sshDir: op.sshDir, file: `${op.other.file}-cert.pub` }), { keyId: "corp", principals: ["me"], signedByThisCa: false, revoked: null, status: "valid" });
  t.is(await readFile(`${op.other.file}-cert.pub`, "utf8"), foreign);
  t.deepEqual(await readIssued(op.ca.paths), []);
});

test("grant --out writes that laptop's ssh files and its certificate as id_ed25519-cert.pub", async (t) => {
  const op = await operator(t);
  const out = path.join(await tempDir(t, "out"), "alice-ssh");
  const r = await grant({ sshDir: op.sshDir, home: op.home, name: "alice", key: `${op.other.file}.pub`, devices: ["pi1"], out, relayFile: op.relayFile, agentSock: op.sock });
  t.is(r.certificateFile, path.join(out, "id_ed25519-cert.pub"));
  t.deepEqual((await readdir(out, { recursive: true })).sort(), ["config", "config.d", "config.d/rtunnel", "id_ed25519-cert.pub", "known_hosts.rtunnel"]);
  const fragment = await readFile(path.join(out, "config.d", "rtunnel"), "utf8");
  t.regex(fragment, /^Host pi1$/m);
  t.notRegex(fragment, /^Host pi2$/m, "only the granted device");
  t.regex(fragment, /IdentityFile ~\/\.ssh\/id_ed25519$/m, "ssh loads ~/.ssh/id_ed25519-cert.pub for this identity by itself");
  t.regex(await readFile(path.join(out, "known_hosts.rtunnel"), "utf8"), new RegExp(`^rtunnel-pi1 ${op.hostKey.type} `, "m"));
  t.is((await inspectCertificate({ file: r.certificateFile })).keyFingerprint, op.other.pub.fingerprint);
  t.false(existsSync(`${op.other.file}-cert.pub`), "nothing beside the key with --out");
});

test("login certifies this laptop's identity for every device enrolled here, beside the identity", async (t) => {
  const op = await operator(t);
  const r = await login({ sshDir: op.sshDir, home: op.home, name: "laptop-op", agentSock: op.sock });
  t.is(r.certificateFile, path.join(op.sshDir, "id_ed25519-cert.pub"));
  t.deepEqual(r.devices, ["pi1", "pi2"]);
  t.is(r.lifetime, "12h");
  t.regex(r.keyId, /^rtunnel:laptop-op:\d+$/);
  t.is((await inspectCertificate({ file: r.certificateFile })).keyFingerprint, op.identity.pub.fingerprint);
  // Again: the old certificate (of this CA) is replaced by a new one.
  const again = await login({ sshDir: op.sshDir, home: op.home, name: "laptop-op", lifetime: "1h", devices: ["pi2"], agentSock: op.sock });
  t.not(again.serial, r.serial);
  t.deepEqual((await inspectCertificate({ file: again.certificateFile })).principals, userCertPrincipals(["pi2"]));
});

test("revoke-cert --no-push revokes here; a push that can't reach the relay keeps the revocation and says so in one line", async (t) => {
  const op = await operator(t);
  const g = await grant({ sshDir: op.sshDir, home: op.home, name: "alice", key: `${op.other.file}.pub`, devices: ["pi1"], agentSock: op.sock });
  const local = await revokeCert({ sshDir: op.sshDir, home: op.home, target: "alice", push: false });
  t.deepEqual(local.revoked.map((r) => r.serial), [g.serial]);
  t.is(local.krl.version, 2);
  t.is(local.relay, undefined);
  const q = await run("ssh-keygen", ["-Q", "-f", caPaths(op.sshDir).krl, g.certificateFile], { check: false });
  t.is(q.code, 1, "revoked in the KRL");
  t.like(await caInspect({ sshDir: op.sshDir, file: g.certificateFile }), { kind: "user", keyId: g.keyId, status: "valid", signedByThisCa: true, revoked: true, validBefore: g.validBefore });

  // Without relay facts: the revocation is kept here, and one line says the relay lacks it.
  const noFacts = await t.throwsAsync(revokeCert({ sshDir: op.sshDir, home: op.home, identity: op.identity.file, cwd: op.home, target: g.serial }), { instanceOf: ExitError });
  t.is(noFacts?.code, 2);
  t.regex(noFacts!.message, /^revoked here \(KRL version 2\), but the relay does not have KRL version 2: no relay facts: pass --relay FILE.*; run `npm run revoke-cert -- --push` when it can be reached$/);
  t.false(noFacts!.message.includes("\n"));
  // With them, the relay is not updated: nothing listens at its address. One line, exit 4.
  const unreachable = await t.throwsAsync(revokeCert({ sshDir: op.sshDir, home: op.home, identity: op.identity.file, relayFile: op.relayFile, target: g.serial }), { instanceOf: ExitError });
  t.is(unreachable?.code, 4);
  t.regex(unreachable!.message, /^revoked here \(KRL version 2\), but the relay does not have KRL version 2: can't reach the relay at 127\.0\.0\.1:1 /);
  t.is((await readRevoked(op.ca.paths)).version, 2, "already revoked: nothing changed");
  await t.throwsAsync(revokeCert({ sshDir: op.sshDir, home: op.home, push: false }), { message: /give a name or serial/ });
  await t.throwsAsync(revokeCert({ sshDir: op.sshDir, home: op.home, target: "nobody", push: false }), { message: /no certificate was issued to nobody/ });
});

test("ca init through its command asks for no passphrase when the CA exists; ca load and ca show see the agent", async (t) => {
  const op = await operator(t, { load: false });
  t.false((await caInit({ sshDir: op.sshDir, home: op.home, prompt: () => Promise.reject(new Error("asked")) })).created);
  const fresh = path.join(op.home, "fresh-ssh");
  await t.throwsAsync(caInit({ sshDir: fresh, env: {} }), { message: /give --passphrase-file FILE or set RTUNNEL_CA_PASSPHRASE_FILE/ });
  t.false(existsSync(fresh));
  const prompted: string[] = [];
  const made = await caInit({ sshDir: fresh, env: {}, prompt: async (q) => (prompted.push(q), PASSPHRASE) });
  t.true(made.created);
  t.deepEqual(prompted, ["CA passphrase: ", "CA passphrase again: "]);
  await t.throwsAsync(caInit({ sshDir: path.join(op.home, "short"), env: {}, prompt: async () => "short" }), { message: /at least 10 characters/ });

  t.like(await caShow({ sshDir: op.sshDir, agentSock: op.sock }), { userCa: { inAgent: false }, hostCa: { inAgent: false }, krl: { version: 1, revoked: 0 } });
  t.deepEqual(await caLoad({ sshDir: op.sshDir, agentSock: op.sock, passphraseFile: op.passFile, lifetime: "1h" }), { loaded: [op.ca.userCa.fingerprint, op.ca.hostCa.fingerprint], lifetime: "1h" });
  t.like(await caShow({ sshDir: op.sshDir, agentSock: op.sock }), { userCa: { inAgent: true }, hostCa: { inAgent: true } });
});

/** The CLI as a user runs it: its own process, HOME a temp dir, the test's agent. */
function cli(args: string[], env: NodeJS.ProcessEnv) {
  return run(process.execPath, ["--import", "tsx", path.join(repoRoot, "provision", "cli.ts"), ...args], { check: false, cwd: repoRoot, env: { ...process.env, ...env }, timeoutMs: 120_000 });
}

test("the CLI: exit codes, one-line errors, --json and --help for ca, grant, login and revoke-cert", async (t) => {
  const op = await operator(t, { load: false });
  const env = { HOME: op.home, SSH_AUTH_SOCK: op.sock, RTUNNEL_CA_PASSPHRASE_FILE: "" };
  const ssh = ["--ssh-dir", op.sshDir];
  const oneLineError = (r: { code: number; stderr: string }, code: number, pattern: RegExp) => {
    t.is(r.code, code, r.stderr);
    t.is(r.stderr.trim().split("\n").length, 1, r.stderr);
    t.regex(r.stderr, /^rtunnel: /);
    t.regex(r.stderr, pattern);
  };
  // No passphrase source and no terminal: one line, nothing made.
  const fresh = path.join(op.home, "fresh");
  oneLineError(await cli(["ca", "init", "--ssh-dir", fresh], env), 2, /--passphrase-file/);
  t.false(existsSync(fresh));
  const made = await cli(["ca", "init", "--ssh-dir", fresh, "--passphrase-file", op.passFile, "--json"], env);
  t.is(made.code, 0, made.stderr);
  t.true(JSON.parse(made.stdout).created);
  const again = await cli(["ca", "init", "--ssh-dir", fresh, "--json"], env);
  t.is(again.code, 0, again.stderr);
  t.false(JSON.parse(again.stdout).created);

  // The CA not loaded: grant stops in one line naming ssh-add.
  const key = `${op.other.file}.pub`;
  oneLineError(await cli(["grant", "alice", "--key", key, "--devices", "pi1", ...ssh], env), 2, /not loaded in ssh-agent: run ssh-add .*user_ca$/m);
  oneLineError(await cli(["grant", "alice", "--key", key, "--devices", "pi1", "--for", "4m", ...ssh], env), 2, /between 5m and 90d/);
  oneLineError(await cli(["grant", "alice", "--key", key, ...ssh], env), 2, /either --devices a,b or --all/);
  const load = await cli(["ca", "load", "--passphrase-file", op.passFile, ...ssh], env);
  t.is(load.code, 0, load.stderr);
  const g = await cli(["grant", "alice", "--key", key, "--devices", "pi1,pi2", "--for", "2h", "--json", ...ssh], env);
  t.is(g.code, 0, g.stderr);
  const granted = JSON.parse(g.stdout);
  t.like(granted, { name: "alice", devices: ["pi1", "pi2"], lifetime: "2h", certificateFile: `${op.other.file}-cert.pub` });
  const l = await cli(["login", "--for", "1h", "--json", ...ssh], env);
  t.is(l.code, 0, l.stderr);
  t.regex(JSON.parse(l.stdout).keyId, /^rtunnel:laptop-[a-z0-9-]+:\d+$/);
  const rv = await cli(["revoke-cert", "alice", "--no-push", "--json", ...ssh], env);
  t.is(rv.code, 0, rv.stderr);
  t.like(JSON.parse(rv.stdout), { krl: { version: 2, revoked: 1 } });
  oneLineError(await cli(["revoke-cert", "--no-push", ...ssh], env), 2, /give a name or serial/);
  oneLineError(await cli(["revoke-cert", ...ssh], env), 2, /give a name or serial to revoke, or --push/);
  // The relay not updated (no relay listens there): exit 4, nothing on stdout, one line that says so.
  const pushed = await cli(["revoke-cert", "--push", "--json", "--relay", op.relayFile, "--identity", op.identity.file, ...ssh], env);
  t.is(pushed.code, 4, pushed.stderr);
  t.is(pushed.stdout, "");
  t.regex(pushed.stderr.trim().split("\n").pop()!, /^rtunnel: the relay does not have KRL version 2: /);

  for (const [cmd, mentions] of [
    [["ca", "init"], ["--passphrase-file", "--rsa", "changes nothing"]],
    [["ca", "load"], ["--passphrase-file", "--for"]],
    [["ca", "inspect"], ["<file>", "--json"]],
    [["grant"], ["--key", "--devices", "--all", "--for", "8h", "--out"]],
    [["login"], ["--for", "12h", "--devices", "--name"]],
    [["revoke-cert"], ["--push", "--no-push", "serial"]],
  ] as const) {
    const h = await cli([...cmd, "--help"], env);
    t.is(h.code, 0, cmd.join(" "));
    for (const m of mentions) t.true(h.stdout.includes(m), `${cmd.join(" ")} --help mentions ${m}`);
  }
});

test("ca init on a terminal asks for the passphrase twice without echoing it, and makes the CA", async (t) => {
  const home = await tempDir(t, "home");
  const sshDir = path.join(home, ".ssh");
  // A real terminal: util-linux `script` runs the CLI on a pseudo-terminal; each answer is
  // typed only once its question has been printed.
  const cmd = [process.execPath, "--import", "tsx", path.join(repoRoot, "provision", "cli.ts"), "ca", "init", "--ssh-dir", sshDir].map((a) => `'${a}'`).join(" ");
  const child = spawn("script", ["-qefc", cmd, "/dev/null"], { cwd: repoRoot, env: { ...process.env, HOME: home, RTUNNEL_CA_PASSPHRASE_FILE: "" }, stdio: ["pipe", "pipe", "pipe"] });
  t.teardown(() => {
    if (child.exitCode === null) child.kill();
  });
  let out = "";
  let answered = 0;
  child.stdout.on("data", (b: Buffer) => {
    out += b.toString("utf8");
    const asked = out.split("CA passphrase").length - 1;
    for (; answered < asked; answered++) child.stdin.write(`${PASSPHRASE}\r`);
  });
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  t.is(code, 0, out);
  t.is(answered, 2);
  t.regex(out, /CA passphrase: .*\n.*CA passphrase again: /s);
  t.false(out.includes(PASSPHRASE), "the passphrase was echoed");
  t.regex(out, /made the fleet CA in /);
  const ca = await requireCa(sshDir);
  t.is(ca.algorithm, "ed25519");
});
