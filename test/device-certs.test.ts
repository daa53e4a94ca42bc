// Fleet certificates on the device (issue 15): the USER_CERTIFICATES section of the sshd
// drop-in (provision/device/sshd.ts) rendered from what `sshd -T` says on OpenSSH 10 and 9.2,
// with and without a CA (without one, the drop-in is byte for byte what it was); its files in
// the plan (before the drop-in that names them, a binary KRL carried in base64, guarded by
// sha256, removed only after the reload that stops naming them); and the change script run for
// real against a stand-in sshd, so the base64 write, the KRL check and the late removals are
// proven on a shell, not only read as text. The Docker suite runs it against real OpenSSH
// (test/device-certs-trixie.docker.test.ts, test/device-certs-bookworm.docker.test.ts).
import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { DEVICE_CA_PATHS, devicePrincipalsFile } from "../lib/contract/ca.ts";
import { run } from "../lib/proc.ts";
import { changeSshdConfig } from "../provision/device/commands.ts";
import {
  DROP_IN_SECTIONS,
  dropInSections,
  effectChecks,
  parseSshdT,
  planDropIn,
  planDropInRemoval,
  renderDropIn,
  sha256,
  SSHD_DROP_IN,
  TUNNEL_SOURCES,
  tunnelConnectionSpec,
  tunnelDirectives,
  USER_CERTIFICATES,
  type DeviceCertificates,
  type FileState,
  type SshdFacts,
  type SshdState,
} from "../provision/device/sshd.ts";

// `sshd -T` on Debian trixie (OpenSSH 10.0) and bookworm (9.2), trimmed to the lines that
// matter: both print trustedusercakeys, revokedkeys and authorizedprincipalsfile (`none` when
// unset) and no hostcertificate line until one is set (servconf.c dumps an empty list as nothing).
const OPENSSH_10 = `port 22
pubkeyauthentication yes
passwordauthentication yes
kbdinteractiveauthentication no
pidfile /run/sshd.pid
trustedusercakeys none
revokedkeys none
authorizedprincipalsfile none
hostkey /etc/ssh/ssh_host_ed25519_key
persourcepenaltyexemptlist none
authenticationmethods any
persourcepenalties crash:90 authfail:5 noauth:1 grace-exceeded:10 refuseconnection:10 max:600 min:15 max-sources4:65536 max-sources6:65536 overflow:permissive overflow6:permissive
`;
const OPENSSH_9_2 = OPENSSH_10.split("\n").filter((l) => !l.startsWith("persourcepenalt")).join("\n");
const DEBIAN_SSHD_CONFIG = "Include /etc/ssh/sshd_config.d/*.conf\n\nKbdInteractiveAuthentication no\nUsePAM yes\n";

function facts(sshdT: string): SshdFacts {
  const global = parseSshdT(sshdT);
  return { version: "OpenSSH_test", global, tunnel: global };
}
const state = (f: SshdFacts, files: Partial<Pick<SshdState, "dropIn" | "owned" | "mainConfig">> = {}): SshdState => ({
  ...f, mainConfig: { text: DEBIAN_SSHD_CONFIG }, dropIn: {}, marker: {}, ...files,
});

// A KRL as ssh-keygen -k writes it (binary: NUL bytes and all), and a host certificate line.
const KRL = Buffer.concat([Buffer.from("SSHKRL\n\0", "latin1"), Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0xff, 0x80, 0x0a, 0x27])]);
const HOST_CERT = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAA rtunnel:raspi:1";
const certs = (o: Partial<DeviceCertificates> = {}): DeviceCertificates => ({
  device: "raspi",
  userCa: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKzfJdLJJlCyrD+3KIAkuMr0ixSRmZ+oujGevf0punAa rtunnel-user-ca",
  krl: KRL,
  hostCertificate: HOST_CERT,
  ...o,
});
const lines = (text: string) => text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
/** The owned files as a device that has them in place would report them. */
function ownedAsWritten(c: DeviceCertificates, account = "pi"): Map<string, FileState> {
  const files: [string, string | Buffer][] = [
    [DEVICE_CA_PATHS.userCa, `${c.userCa}\n`],
    [DEVICE_CA_PATHS.krl, c.krl],
    [devicePrincipalsFile(account), `rtunnel-device:${c.device}\n`],
    ...(c.hostCertificate ? [[DEVICE_CA_PATHS.hostCert, `${c.hostCertificate}\n`] as [string, string]] : []),
  ];
  return new Map(files.map(([p, content]) => [p, { text: content.toString(), sha256: sha256(content) }]));
}

test("without a CA the drop-in is byte for byte today's, on OpenSSH 10 and 9.2 (the new sshd -T keywords change nothing)", (t) => {
  t.deepEqual(dropInSections(), [...DROP_IN_SECTIONS]);
  const header = [
    "# Written by rtunnel enrollment; revoke-device removes it. The device's sshd settings for",
    "# connections through the rtunnel tunnel, which all reach this sshd from 127.0.0.1 or ::1.",
    "# Rendered for this device's sshd (what `sshd -T` knows); enrolling again renders it anew.",
    "",
  ];
  const match = [
    "# Through the tunnel (and to localhost on the device):",
    "Match Address 127.0.0.1,::1",
    "\t# Laptops log in through the tunnel with their keys.",
    "\tPubkeyAuthentication yes",
    "\t# Exempt from penalties, loopback takes nothing that can be guessed: public keys only.",
    "\tAuthenticationMethods publickey",
    "\tPasswordAuthentication no",
    "\tKbdInteractiveAuthentication no",
    "",
  ];
  const exemption = [
    "# Every laptop's connection through the tunnel comes from 127.0.0.1,::1: a penalty for one",
    "# laptop's failed logins would lock every laptop out.",
    "PerSourcePenaltyExemptList 127.0.0.1,::1",
    "",
  ];
  t.is(renderDropIn(tunnelDirectives(facts(OPENSSH_10), dropInSections())), [...header, ...exemption, ...match].join("\n"));
  t.is(renderDropIn(tunnelDirectives(facts(OPENSSH_9_2), dropInSections())), [...header, ...match].join("\n"));
  const plan = planDropIn(state(facts(OPENSSH_10)), "pi", dropInSections());
  t.deepEqual(plan.writes.map((w) => w.path), [SSHD_DROP_IN]);
  t.is(plan.verify, undefined);
  t.deepEqual(plan.conflicts, []);
});

for (const [version, sshdT] of [["OpenSSH 10", OPENSSH_10], ["OpenSSH 9.2", OPENSSH_9_2]] as const) {
  test(`${version} with a CA: TrustedUserCAKeys, RevokedKeys, AuthorizedPrincipalsFile and HostCertificate, global, before the Match block (HostCertificate though sshd -T prints no hostcertificate yet)`, (t) => {
    const ds = tunnelDirectives(facts(sshdT), dropInSections(certs(), "pi"));
    const text = renderDropIn(ds);
    const global = lines(text.slice(0, text.indexOf("\nMatch ")));
    t.deepEqual(global.filter((l) => !l.startsWith("PerSource")), [
      "TrustedUserCAKeys /etc/ssh/rtunnel_user_ca.pub",
      "RevokedKeys /etc/ssh/rtunnel_revoked.krl",
      "AuthorizedPrincipalsFile /etc/ssh/rtunnel_principals/%u",
      "HostCertificate /etc/ssh/rtunnel_host_ed25519_key-cert.pub",
    ]);
    t.is(global.some((l) => l.startsWith("PerSourcePenaltyExemptList")), version === "OpenSSH 10");
    t.true(text.split("\n").every((l) => l.length <= 92), "comments are wrapped");
    // The Match block is today's, untouched.
    t.is(text.slice(text.indexOf("\n# Through the tunnel")), renderDropIn(tunnelDirectives(facts(sshdT))).slice(renderDropIn(tunnelDirectives(facts(sshdT))).indexOf("\n# Through the tunnel")));
    // No host certificate (no ed25519 host key): the rest stays, HostCertificate goes.
    const noHost = renderDropIn(tunnelDirectives(facts(sshdT), dropInSections(certs({ hostCertificate: undefined }), "pi")));
    t.notRegex(noHost, /HostCertificate/);
    t.regex(noHost, /^TrustedUserCAKeys /m);
  });
}

test("the certificate directives are checked for every connection and for tunnel connections (a Match block of the device's could set them for loopback); HostCertificate globally", (t) => {
  const ds = tunnelDirectives(facts(OPENSSH_10), dropInSections(certs(), "pi"));
  const checks = effectChecks(ds, "pi");
  const specs = (line: string) => checks.filter((c) => c.line === line).map((c) => c.spec);
  for (const line of ["trustedusercakeys /etc/ssh/rtunnel_user_ca.pub", "revokedkeys /etc/ssh/rtunnel_revoked.krl", "authorizedprincipalsfile /etc/ssh/rtunnel_principals/%u"]) {
    t.deepEqual(specs(line), [undefined, ...TUNNEL_SOURCES.map((a) => tunnelConnectionSpec("pi", a))], line);
  }
  t.deepEqual(specs("hostcertificate /etc/ssh/rtunnel_host_ed25519_key-cert.pub"), [undefined]);
  t.deepEqual(specs("persourcepenaltyexemptlist 127.0.0.1,::1"), [undefined], "today's checks unchanged");
});

test("enrollment's plan with a CA: the section's files first (KRL in base64, principals for the account), then the drop-in, each guarded; file checks for the KRL and the host certificate", (t) => {
  const plan = planDropIn(state(facts(OPENSSH_10)), "pi", dropInSections(certs(), "pi"));
  t.deepEqual(plan.writes.map((w) => [w.path, w.mode, w.dirMode, w.expectSha256, w.encoding]), [
    [DEVICE_CA_PATHS.userCa, "644", "755", undefined, undefined],
    [DEVICE_CA_PATHS.krl, "644", "755", undefined, "base64"],
    ["/etc/ssh/rtunnel_principals/pi", "644", "755", undefined, undefined],
    [DEVICE_CA_PATHS.hostCert, "644", "755", undefined, undefined],
    [SSHD_DROP_IN, "644", "755", undefined, undefined],
  ]);
  t.deepEqual(Buffer.from(plan.writes[1]!.text!, "base64"), KRL);
  t.is(plan.writes[2]!.text, "rtunnel-device:raspi\n");
  t.is(plan.writes[0]!.text, `${certs().userCa}\n`);
  t.is(plan.writes[3]!.text, `${HOST_CERT}\n`);
  t.deepEqual(plan.verify, [
    { kind: "krl", path: DEVICE_CA_PATHS.krl, probe: DEVICE_CA_PATHS.userCa },
    { kind: "sshd-silent", path: DEVICE_CA_PATHS.hostCert },
  ]);
  t.regex(plan.summary[0]!, /^write \/etc\/ssh\/rtunnel_user_ca\.pub, \/etc\/ssh\/rtunnel_revoked\.krl, \/etc\/ssh\/rtunnel_principals\/pi, \/etc\/ssh\/rtunnel_host_ed25519_key-cert\.pub \(before the drop-in that names them\)$/);
  t.regex(plan.summary[1]!, /TrustedUserCAKeys \/etc\/ssh\/rtunnel_user_ca\.pub; RevokedKeys /);
  t.deepEqual(plan.conflicts, []);
  // Another account's principals file is its own.
  t.is(planDropIn(state(facts(OPENSSH_10)), "root", dropInSections(certs(), "root")).writes[2]!.path, "/etc/ssh/rtunnel_principals/root");
});

test("a re-run with everything in place changes nothing; a new KRL is one guarded write (and the reload), the drop-in untouched; a renewed host certificate the same", (t) => {
  const c = certs();
  const sections = dropInSections(c, "pi");
  const dropIn = { text: renderDropIn(tunnelDirectives(facts(OPENSSH_10), sections)) };
  const inPlace = planDropIn(state(facts(OPENSSH_10), { dropIn, owned: ownedAsWritten(c) }), "pi", sections);
  t.deepEqual([inPlace.writes, inPlace.checks, inPlace.summary, inPlace.verify], [[], [], [], undefined]);

  const newKrl = Buffer.concat([KRL, Buffer.from("more")]);
  const push = planDropIn(state(facts(OPENSSH_10), { dropIn, owned: ownedAsWritten(c) }), "pi", dropInSections(certs({ krl: newKrl }), "pi"));
  t.deepEqual(push.writes.map((w) => [w.path, w.expectSha256]), [[DEVICE_CA_PATHS.krl, sha256(KRL)]]);
  t.deepEqual(Buffer.from(push.writes[0]!.text!, "base64"), newKrl);
  t.true(push.checks.length > 0, "the effect checks run again");
  t.is(push.verify?.[0]?.kind, "krl");

  const renewed = planDropIn(state(facts(OPENSSH_10), { dropIn, owned: ownedAsWritten(c) }), "pi", dropInSections(certs({ hostCertificate: `${HOST_CERT}x` }), "pi"));
  t.deepEqual(renewed.writes.map((w) => w.path), [DEVICE_CA_PATHS.hostCert]);
});

test("a fleet whose CA went: the drop-in is rewritten without the section and its files go only after the reload (the principals directory too, when empty)", (t) => {
  const c = certs();
  const dropIn = { text: renderDropIn(tunnelDirectives(facts(OPENSSH_10), dropInSections(c, "pi"))) };
  const plan = planDropIn(state(facts(OPENSSH_10), { dropIn, owned: ownedAsWritten(c) }), "pi", dropInSections());
  t.deepEqual(plan.writes.map((w) => [w.path, w.text === undefined, w.afterReload ?? false]), [
    [SSHD_DROP_IN, false, false],
    [DEVICE_CA_PATHS.userCa, true, true],
    [DEVICE_CA_PATHS.krl, true, true],
    ["/etc/ssh/rtunnel_principals/pi", true, true],
    [DEVICE_CA_PATHS.hostCert, true, true],
  ]);
  t.is(plan.writes.find((w) => w.path.startsWith(DEVICE_CA_PATHS.principalsDir))?.dropDir, DEVICE_CA_PATHS.principalsDir);
  t.is(plan.writes[2]!.expectSha256, sha256(KRL), "guarded like every other write");
  t.notRegex(plan.writes[0]!.text!, /RevokedKeys/);
  t.regex(plan.summary.at(-1)!, /^remove .*rtunnel_revoked\.krl.* once sshd no longer names them$/);
  // A device without a host certificate any more (its ed25519 key gone): only that file goes.
  const noHost = planDropIn(state(facts(OPENSSH_10), { dropIn, owned: ownedAsWritten(c) }), "pi", dropInSections(certs({ hostCertificate: undefined }), "pi"));
  t.deepEqual(noHost.writes.map((w) => [w.path, w.afterReload ?? false]), [[SSHD_DROP_IN, false], [DEVICE_CA_PATHS.hostCert, true]]);
});

test("revoke-device's plan: the drop-in first, the certificate files after the reload", (t) => {
  const c = certs();
  const dropIn = { text: renderDropIn(tunnelDirectives(facts(OPENSSH_10), dropInSections(c, "pi"))) };
  const plan = planDropInRemoval({ mainConfig: { text: DEBIAN_SSHD_CONFIG }, dropIn, marker: {}, owned: ownedAsWritten(c) });
  t.deepEqual(plan.writes.map((w) => [w.path, w.afterReload ?? false]), [
    [SSHD_DROP_IN, false],
    [DEVICE_CA_PATHS.userCa, true],
    [DEVICE_CA_PATHS.krl, true],
    ["/etc/ssh/rtunnel_principals/pi", true],
    [DEVICE_CA_PATHS.hostCert, true],
  ]);
  t.deepEqual(planDropInRemoval({ mainConfig: { text: DEBIAN_SSHD_CONFIG }, dropIn: {}, marker: {} }).writes, []);
});

test("a device whose own sshd sets TrustedUserCAKeys, RevokedKeys or AuthorizedPrincipalsFile is a conflict (ours would replace it); ours or none is not", (t) => {
  const cases: [string, number][] = [
    ["trustedusercakeys /etc/ssh/my_ca.pub", 1],
    ["revokedkeys /etc/ssh/revoked", 1],
    ["authorizedprincipalsfile .ssh/principals", 1],
    ["trustedusercakeys /etc/ssh/rtunnel_user_ca.pub", 0],
    ["authorizedprincipalsfile /etc/ssh/rtunnel_principals/%u", 0],
  ];
  for (const [line, n] of cases) {
    const keyword = line.split(" ")[0]!;
    const f = facts(OPENSSH_10.replace(new RegExp(`^${keyword} .*$`, "m"), line));
    const conflicts = planDropIn(state(f), "pi", dropInSections(certs(), "pi")).conflicts;
    t.is(conflicts.length, n, line);
    if (n) t.regex(conflicts[0]!, new RegExp(`^its sshd already sets ${line.replace(/[./%]/g, "\\$&")}, which rtunnel's drop-in would replace`));
    t.deepEqual(planDropIn(state(f), "pi", dropInSections()).conflicts, [], "without a CA nothing is in the way");
  }
  t.is(dropInSections(certs(), "pi").at(-1)!.id, USER_CERTIFICATES);
  t.throws(() => dropInSections(certs()), { message: /needs the device account/ });
});

function shellSyntax(text: string): Promise<string> {
  return new Promise((resolve) => execFile("sh", ["-n", "-c", text], (err, _out, stderr) => resolve(err ? stderr || String(err) : "")));
}

test("the change script with certificates: the KRL and the CA files are written before the drop-in, ssh-keygen -Q reads the KRL and sshd -t must say nothing of the host certificate before the checks; late removals after the reload", async (t) => {
  const c = certs();
  const plan = planDropIn(state(facts(OPENSSH_10)), "pi", dropInSections(c, "pi"));
  const text = changeSshdConfig(plan.writes, plan.checks, plan.verify).text;
  t.is(await shellSyntax(text), "");
  const at = (s: string) => {
    const i = text.indexOf(s);
    t.not(i, -1, s);
    return i;
  };
  t.true(at(`\nput 1 ${DEVICE_CA_PATHS.krl} 644 755 `) < at(`\nput 4 ${SSHD_DROP_IN} `), "the KRL before the drop-in that names it");
  t.regex(text, /\nput 1 \/etc\/ssh\/rtunnel_revoked\.krl 644 755 \S+ base64 \|\|/);
  t.true(at('out=$("$sshd" -t 2>&1)') < at(`ssh-keygen -Q -f ${DEVICE_CA_PATHS.krl} ${DEVICE_CA_PATHS.userCa}`));
  t.true(at(`ssh-keygen -Q -f ${DEVICE_CA_PATHS.krl}`) < at(`grep -qF -- ${DEVICE_CA_PATHS.hostCert}`));
  t.true(at(`grep -qF -- ${DEVICE_CA_PATHS.hostCert}`) < at('eff=$("$sshd" -T 2>&1)'));

  const gone = planDropIn(state(facts(OPENSSH_10), { dropIn: { text: "x" }, owned: ownedAsWritten(c) }), "pi", dropInSections());
  const late = changeSshdConfig(gone.writes, gone.checks, gone.verify).text;
  t.is(await shellSyntax(late), "");
  const reload = late.indexOf('echo "sshd-reload: $how"');
  const drop = late.lastIndexOf(`drop ${DEVICE_CA_PATHS.krl} ||`);
  t.true(late.indexOf('$how || { restore;') < drop && drop < reload, "dropped after the reload, before its last line");
  t.true(late.indexOf(`drop ${DEVICE_CA_PATHS.krl} ||`) > late.indexOf("if [ -z \"$how\" ]; then\n:"), "and when no sshd runs");
  t.notRegex(late.slice(late.indexOf("restore() {"), late.indexOf("}\n", late.indexOf("restore() {"))), /rtunnel_revoked/, "never put back: nothing happened to it before the reload");
});

/**
 * Runs a change script on this machine with a stand-in sshd (`-t` and `-T` as the test says,
 * no pid file: no reload) and the files under `dir` instead of /etc/ssh.
 */
async function runChange(dir: string, script: string, o: { sshdT?: string; sshdTest?: string } = {}) {
  const bin = path.join(dir, "bin");
  await mkdir(bin, { recursive: true });
  await writeFile(path.join(bin, "sshd"), `#!/bin/sh\ncase "$1" in -t) cat ${JSON.stringify(path.join(dir, "sshd-t"))} >&2; exit 0 ;; -T) cat ${JSON.stringify(path.join(dir, "sshdT"))} ;; esac\n`);
  await chmod(path.join(bin, "sshd"), 0o755);
  await writeFile(path.join(dir, "sshdT"), o.sshdT ?? "");
  await writeFile(path.join(dir, "sshd-t"), o.sshdTest ?? "");
  return run("sh", ["-c", script.replaceAll("/etc/ssh/", `${dir}/etc/ssh/`)], { check: false, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
}

test("the change script, run: a binary KRL arrives byte for byte, new files are 0644 in a new 0755 directory, and late removals take the file and its empty directory", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-certs-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const krlFile = path.join(dir, "empty.krl");
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "ca")]);
  await writeFile(path.join(dir, "spec"), "");
  await run("ssh-keygen", ["-k", "-f", krlFile, "-s", path.join(dir, "ca.pub"), path.join(dir, "spec")]);
  const krl = await readFile(krlFile);
  t.true(krl.includes(0), "a real KRL has NUL bytes");
  const c = certs({ krl, userCa: (await readFile(path.join(dir, "ca.pub"), "utf8")).trim(), hostCertificate: undefined });
  await mkdir(path.join(dir, "etc/ssh/sshd_config.d"), { recursive: true });
  const plan = planDropIn(state(facts(OPENSSH_10)), "pi", dropInSections(c, "pi"));
  const r = await runChange(dir, changeSshdConfig(plan.writes, [], plan.verify).text);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /sshd-reload: none/);
  const etc = (p: string) => path.join(dir, p);
  t.deepEqual(await readFile(etc(DEVICE_CA_PATHS.krl)), krl);
  t.is(await readFile(etc("/etc/ssh/rtunnel_principals/pi"), "utf8"), "rtunnel-device:raspi\n");
  t.is((await stat(etc("/etc/ssh/rtunnel_principals/pi"))).mode & 0o777, 0o644);
  t.is((await stat(etc(DEVICE_CA_PATHS.principalsDir))).mode & 0o777, 0o755);
  t.is((await stat(etc(DEVICE_CA_PATHS.krl))).mode & 0o777, 0o644);

  // Revoke: the drop-in (here, nothing else of it) goes, then the files and the principals directory.
  const owned = new Map<string, FileState>();
  for (const p of [DEVICE_CA_PATHS.userCa, DEVICE_CA_PATHS.krl, "/etc/ssh/rtunnel_principals/pi"]) {
    const bytes = await readFile(etc(p));
    owned.set(p, { text: bytes.toString(), sha256: sha256(bytes) });
  }
  const removal = planDropInRemoval({ mainConfig: {}, dropIn: { text: await readFile(etc(SSHD_DROP_IN), "utf8") }, marker: {}, owned });
  const gone = await runChange(dir, changeSshdConfig(removal.writes, removal.checks).text);
  t.is(gone.code, 0, gone.stderr);
  for (const p of [SSHD_DROP_IN, DEVICE_CA_PATHS.userCa, DEVICE_CA_PATHS.krl, DEVICE_CA_PATHS.principalsDir]) {
    await t.throwsAsync(stat(etc(p)), { code: "ENOENT" }, p);
  }
});

test("the change script, run: a KRL ssh-keygen can't read, or an sshd -t that names the host certificate, puts every file back with one line", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-certs-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "ca")]);
  await mkdir(path.join(dir, "etc/ssh/sshd_config.d"), { recursive: true });
  const userCa = (await readFile(path.join(dir, "ca.pub"), "utf8")).trim();
  const listing = async () => (await run("sh", ["-c", `cd ${dir}/etc && find . | sort`])).stdout;
  const before = await listing();

  const bad = planDropIn(state(facts(OPENSSH_10)), "pi", dropInSections(certs({ userCa, krl: Buffer.from("not a KRL\0") }), "pi"));
  const r = await runChange(dir, changeSshdConfig(bad.writes, [], bad.verify).text);
  t.is(r.code, 1);
  t.regex(r.stderr.trim(), /^\S+\/etc\/ssh\/rtunnel_revoked\.krl is not a revocation list ssh-keygen can read \(.*\): sshd would refuse every key; the device's sshd configuration is as it was$/);
  t.is(await listing(), before, "every file put back, the new directory gone");

  const krlFile = path.join(dir, "empty.krl");
  await writeFile(path.join(dir, "spec"), "");
  await run("ssh-keygen", ["-k", "-f", krlFile, "-s", path.join(dir, "ca.pub"), path.join(dir, "spec")]);
  const cert = planDropIn(state(facts(OPENSSH_10)), "pi", dropInSections(certs({ userCa, krl: await readFile(krlFile) }), "pi"));
  const complaint = `No matching private key for certificate: ${dir}${DEVICE_CA_PATHS.hostCert}\r\n`;
  const c = await runChange(dir, changeSshdConfig(cert.writes, [], cert.verify).text, { sshdTest: complaint });
  t.is(c.code, 1);
  t.is(c.stderr.trim(), `sshd -t: ${complaint.trim()}; the device's sshd configuration is as it was`);
  t.is(await listing(), before);
});
