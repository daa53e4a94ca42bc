// The device's sshd drop-in (provision/device/sshd.ts) rendered from what `sshd -T` says, for
// OpenSSH 10 and 9.2; the Include line added to an sshd_config that does not read it and
// taken out again; the plans of enrollment and revoke-device; and the transaction script
// that applies them (provision/device/commands.ts), as text: quoting, and the order of its
// guards, `sshd -t`, checks, backups and reload. The Docker suite runs all of it against real
// OpenSSH (test/device-sshd-trixie.docker.test.ts, test/device-sshd-bookworm.docker.test.ts).
import test from "ava";
import fc from "fast-check";
import { execFile } from "node:child_process";
import { changeSshdConfig } from "../provision/device/commands.ts";
import { sshdComplaint } from "../provision/device/device.ts";
import {
  effectChecks,
  globRegExp,
  INCLUDE_LINES,
  loopbackConsequence,
  parseSshdT,
  planDropIn,
  planDropInRemoval,
  readsDropIn,
  renderDropIn,
  sha256,
  SSHD_CONFIG,
  SSHD_DROP_IN,
  SSHD_INCLUDE_MARKER,
  TUNNEL_SOURCES,
  tunnelConnectionSpec,
  tunnelDirectives,
  withIncludeLine,
  withoutIncludeLine,
  DROP_IN_SECTIONS,
  type DropInSection,
  type SshdFacts,
  type SshdState,
} from "../provision/device/sshd.ts";

// What `sshd -T` prints on Debian trixie (OpenSSH 10.0) and bookworm (9.2), trimmed to the lines that matter.
const OPENSSH_10 = `port 22
pubkeyauthentication yes
passwordauthentication yes
kbdinteractiveauthentication no
pidfile /run/sshd.pid
persourcepenaltyexemptlist none
authenticationmethods any
persourcepenalties crash:90 authfail:5 noauth:1 grace-exceeded:10 refuseconnection:10 max:600 min:15 max-sources4:65536 max-sources6:65536 overflow:permissive overflow6:permissive
`;
const OPENSSH_9_2 = OPENSSH_10.split("\n").filter((l) => !l.startsWith("persourcepenalt")).join("\n");
const DEBIAN_SSHD_CONFIG = "# comment\n\nInclude /etc/ssh/sshd_config.d/*.conf\n\nKbdInteractiveAuthentication no\nUsePAM yes\nSubsystem\tsftp\t/usr/lib/openssh/sftp-server\n";

function facts(sshdT: string, tunnel: Record<string, string> = {}): SshdFacts {
  const global = parseSshdT(sshdT);
  return { version: "OpenSSH_test", global, tunnel: new Map([...global, ...Object.entries(tunnel)]) };
}
const state = (f: SshdFacts, files: Partial<Pick<SshdState, "mainConfig" | "dropIn" | "marker">> = {}): SshdState => ({
  ...f, mainConfig: { text: DEBIAN_SSHD_CONFIG }, dropIn: {}, marker: {}, ...files,
});
const line = (d: { keyword: string; value: string }) => `${d.keyword} ${d.value}`;

test("OpenSSH 10: loopback exempt from penalties (global), and from loopback public keys only (one Match block after it)", (t) => {
  const ds = tunnelDirectives(facts(OPENSSH_10));
  t.deepEqual(ds.filter((d) => d.scope === "global").map(line), ["PerSourcePenaltyExemptList 127.0.0.1,::1"]);
  t.deepEqual(ds.filter((d) => d.scope === "tunnel").map(line), ["PubkeyAuthentication yes", "AuthenticationMethods publickey", "PasswordAuthentication no", "KbdInteractiveAuthentication no"]);
  const text = renderDropIn(ds);
  const directives = text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
  t.deepEqual(directives, [
    "PerSourcePenaltyExemptList 127.0.0.1,::1",
    "Match Address 127.0.0.1,::1",
    "\tPubkeyAuthentication yes",
    "\tAuthenticationMethods publickey",
    "\tPasswordAuthentication no",
    "\tKbdInteractiveAuthentication no",
  ]);
  t.true(text.split("\n").every((l) => l.length <= 92), "comments are wrapped");
  t.regex(loopbackConsequence(ds) ?? "", /password .*through the tunnel or to localhost on the device no longer works/);
});

test("OpenSSH 9.2 (no persourcepenaltyexemptlist in sshd -T): the exemption is left out, the Match block stays", (t) => {
  const ds = tunnelDirectives(facts(OPENSSH_9_2));
  t.false(ds.some((d) => d.keyword === "PerSourcePenaltyExemptList"));
  const text = renderDropIn(ds);
  t.notRegex(text, /^PerSource/m);
  t.regex(text, /^Match Address 127\.0\.0\.1,::1\n(\t.*\n)+$/m);
  // Any keyword sshd does not print is left out the same way (feature detection, not versions).
  const older = tunnelDirectives(facts(OPENSSH_9_2.replace(/^kbdinteractiveauthentication .*$/m, "")));
  t.false(older.some((d) => d.keyword === "KbdInteractiveAuthentication"));
});

test("the tunnel sources are the agent's forward target and its IPv6 twin; the -C spec names a loopback connection to port 22", (t) => {
  t.deepEqual(TUNNEL_SOURCES, ["127.0.0.1", "::1"]);
  t.is(tunnelConnectionSpec("pi", "127.0.0.1"), "user=pi,host=127.0.0.1,addr=127.0.0.1,laddr=127.0.0.1,lport=22");
  t.throws(() => tunnelConnectionSpec("pi,addr=10.0.0.1", "127.0.0.1"), { instanceOf: RangeError });
  t.deepEqual(effectChecks(tunnelDirectives(facts(OPENSSH_9_2)), "pi").filter((c) => c.line === "passwordauthentication no").map((c) => c.spec), [
    tunnelConnectionSpec("pi", "127.0.0.1"),
    tunnelConnectionSpec("pi", "::1"),
  ]);
  t.deepEqual(effectChecks(tunnelDirectives(facts(OPENSSH_10)), "pi")[0], { line: "persourcepenaltyexemptlist 127.0.0.1,::1" });
});

test("the device's own exemptions are kept, and a device that demands a key plus a second factor from loopback keeps it", (t) => {
  const own = tunnelDirectives(facts(OPENSSH_10.replace("persourcepenaltyexemptlist none", "persourcepenaltyexemptlist 192.0.2.0/24,::1")));
  t.is(own.find((d) => d.keyword === "PerSourcePenaltyExemptList")?.value, "192.0.2.0/24,::1,127.0.0.1");
  const cases: [string, boolean][] = [
    ["any", true],
    ["publickey", true],
    ["password", true],
    ["publickey password", true], // a password alone still gets in
    ["keyboard-interactive:pam", true],
    ["publickey,keyboard-interactive", false], // a key and a second factor: stronger than ours
    ["publickey,password publickey,keyboard-interactive:pam", false],
  ];
  for (const [methods, overridden] of cases) {
    const ds = tunnelDirectives(facts(OPENSSH_10, { authenticationmethods: methods }));
    t.is(ds.some((d) => d.keyword === "AuthenticationMethods"), overridden, methods);
    t.is(ds.some((d) => d.keyword === "PasswordAuthentication"), overridden, methods);
    t.is(loopbackConsequence(ds) !== undefined, overridden, methods);
    t.true(ds.some((d) => line(d) === "PubkeyAuthentication yes"), methods);
  }
});

test("rendered again from the facts of a device that has the drop-in, it is the same text (a re-run changes nothing)", (t) => {
  for (const [sshdT, own] of [[OPENSSH_10, "none"], [OPENSSH_10, "10.1.0.0/16"], [OPENSSH_9_2, ""]] as const) {
    const base = own ? sshdT.replace("persourcepenaltyexemptlist none", `persourcepenaltyexemptlist ${own}`) : sshdT;
    for (const methods of ["any", "publickey,keyboard-interactive"]) {
      const first = tunnelDirectives(facts(base, { authenticationmethods: methods }));
      // What sshd -T says once the drop-in is read: its values win.
      const exempt = first.find((d) => d.scope === "global");
      const after = facts(exempt ? base.replace(/^persourcepenaltyexemptlist .*$/m, `persourcepenaltyexemptlist ${exempt.value}`) : base, {
        authenticationmethods: first.find((d) => d.keyword === "AuthenticationMethods")?.value ?? methods,
      });
      t.is(renderDropIn(tunnelDirectives(after)), renderDropIn(first), `${own} ${methods}`);
    }
  }
});

test("glob(3) patterns: * and ? stop at /, classes and negated classes, a leading dot is not matched by a wildcard", (t) => {
  const cases: [string, string, boolean][] = [
    ["/etc/ssh/sshd_config.d/*.conf", "/etc/ssh/sshd_config.d/rtunnel.conf", true],
    ["/etc/ssh/*.conf", "/etc/ssh/sshd_config.d/rtunnel.conf", false],
    ["/etc/ssh/*/*.conf", "/etc/ssh/sshd_config.d/rtunnel.conf", true],
    ["/etc/ssh/sshd_config.d/?tunnel.conf", "/etc/ssh/sshd_config.d/rtunnel.conf", true],
    ["/etc/ssh/sshd_config.d/[rs]tunnel.conf", "/etc/ssh/sshd_config.d/rtunnel.conf", true],
    ["/etc/ssh/sshd_config.d/[!r]tunnel.conf", "/etc/ssh/sshd_config.d/rtunnel.conf", false],
    ["/etc/ssh/sshd_config.d/*.cfg", "/etc/ssh/sshd_config.d/rtunnel.conf", false],
    ["/etc/ssh/sshd_config.d/*", "/etc/ssh/sshd_config.d/.hidden", false],
    ["/etc/ssh/sshd_config.d/.*", "/etc/ssh/sshd_config.d/.hidden", true],
    ["/etc/ssh/sshd_config.d/rtunnel.conf", "/etc/ssh/sshd_config.d/rtunnelXconf", false],
    ["/etc/ssh/sshd_config.d/(x|y)+", "/etc/ssh/sshd_config.d/(x|y)+", true],
  ];
  for (const [pattern, file, matches] of cases) t.is(globRegExp(pattern).test(file), matches, `${pattern} ${file}`);
});

test("an sshd_config reads the drop-in only through an Include before its first Match line", (t) => {
  const cases: [string, boolean][] = [
    [DEBIAN_SSHD_CONFIG, true],
    ["Include sshd_config.d/*.conf\n", true], // relative: under /etc/ssh
    [`include=${SSHD_DROP_IN}\n`, true],
    [`Include /etc/ssh/other.conf "/etc/ssh/sshd_config.d/*.conf"\n`, true],
    ["Port 22\nInclude /etc/ssh/sshd_config.d/*.conf\n", true],
    ["#Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n", false],
    ["Port 22\n", false],
    ["", false],
    ["Match User pi\n\tInclude /etc/ssh/sshd_config.d/*.conf\n", false], // only for connections that match
    ["Match all\nInclude /etc/ssh/sshd_config.d/*.conf\n", false],
    ["Include /etc/ssh/sshd_config.d/*.cfg\n", false],
    ["Include /etc/ssh/*.conf\n", false],
  ];
  for (const [text, reads] of cases) t.is(readsDropIn(text), reads, JSON.stringify(text));
});

test("the Include line goes on top and comes out again byte for byte (line endings kept); an edited one is left alone", async (t) => {
  t.is(withIncludeLine(DEBIAN_SSHD_CONFIG), `${INCLUDE_LINES.join("\n")}\n${DEBIAN_SSHD_CONFIG}`);
  t.true(readsDropIn(withIncludeLine("Port 22\nMatch User x\n\tX11Forwarding no\n")));
  t.is(withIncludeLine("Port 22\r\n"), `${INCLUDE_LINES.join("\r\n")}\r\nPort 22\r\n`);
  const marker = `${INCLUDE_LINES.join("\n")}\n`;
  await fc.assert(
    fc.property(fc.string({ unit: "binary" }), fc.boolean(), (body, crlf) => {
      const text = crlf ? body.replace(/\r?\n/g, "\r\n") : body;
      return withoutIncludeLine(withIncludeLine(text), marker) === text;
    }),
    { numRuns: 300 },
  );
  const edited = withIncludeLine("Port 22\n").replace("Include /etc", "Include  /etc");
  t.is(withoutIncludeLine(edited, marker), undefined);
  t.is(withoutIncludeLine("Port 22\n", ""), undefined);
});

test("enrollment's plan: the drop-in (guarded by the sha256 it read) and, only for a config that does not read it, the Include line and its marker; nothing when all is in place", (t) => {
  const f = facts(OPENSSH_10);
  const fresh = planDropIn(state(f), "pi");
  t.deepEqual(fresh.writes.map((w) => [w.path, w.expectSha256, w.mode]), [[SSHD_DROP_IN, undefined, "644"]]);
  t.is(fresh.writes[0]!.text, renderDropIn(tunnelDirectives(f)));
  t.true(fresh.checks.length > 0);
  t.regex(fresh.summary[0]!, /^write \/etc\/ssh\/sshd_config\.d\/rtunnel\.conf for OpenSSH_test: PerSourcePenaltyExemptList 127\.0\.0\.1,::1; from 127\.0\.0\.1,::1: .*AuthenticationMethods publickey/);

  const inPlace = planDropIn(state(f, { dropIn: { text: renderDropIn(tunnelDirectives(f)) } }), "pi");
  t.deepEqual([inPlace.writes, inPlace.checks, inPlace.summary], [[], [], []]);

  const stale = planDropIn(state(f, { dropIn: { text: "# edited by hand\n", sha256: "ab".repeat(32) } }), "pi");
  t.deepEqual(stale.writes.map((w) => [w.path, w.expectSha256, w.backup]), [[SSHD_DROP_IN, "ab".repeat(32), "/etc/rtunnel/sshd-drop-in.rtunnel-backup"]]);
  t.regex(stale.summary[0]!, /^rewrite /);

  const noInclude = planDropIn(state(f, { mainConfig: { text: "Port 22\n" } }), "pi");
  t.deepEqual(noInclude.writes.map((w) => [w.path, w.expectSha256, w.mode, w.dirMode]), [
    [SSHD_DROP_IN, undefined, "644", "755"],
    [SSHD_CONFIG, sha256("Port 22\n"), "644", "755"],
    [SSHD_INCLUDE_MARKER, undefined, "600", "700"],
  ]);
  t.is(noInclude.writes[1]!.text, withIncludeLine("Port 22\n"));
  t.is(noInclude.writes[1]!.backup, "/etc/ssh/sshd_config.rtunnel-backup");
  t.is(noInclude.writes[2]!.text, `${INCLUDE_LINES.join("\n")}\n`);
});

test("revoke-device's plan: the drop-in goes, and the Include line only where the marker says enrollment added it", (t) => {
  const drop = renderDropIn(tunnelDirectives(facts(OPENSSH_10)));
  const marker = `${INCLUDE_LINES.join("\n")}\n`;
  t.deepEqual(planDropInRemoval({ mainConfig: { text: DEBIAN_SSHD_CONFIG }, dropIn: {}, marker: {} }).writes, []);
  const debian = planDropInRemoval({ mainConfig: { text: DEBIAN_SSHD_CONFIG }, dropIn: { text: drop }, marker: {} });
  t.deepEqual(debian.writes.map((w) => [w.path, w.text, w.expectSha256]), [[SSHD_DROP_IN, undefined, sha256(drop)]]);
  const added = planDropInRemoval({ mainConfig: { text: withIncludeLine("Port 22\n") }, dropIn: { text: drop }, marker: { text: marker } });
  t.deepEqual(added.writes.map((w) => [w.path, w.text]), [[SSHD_DROP_IN, undefined], [SSHD_CONFIG, "Port 22\n"], [SSHD_INCLUDE_MARKER, undefined]]);
  t.deepEqual(added.warnings, []);
  const edited = planDropInRemoval({ mainConfig: { text: "Port 22\n" }, dropIn: { text: drop }, marker: { text: marker } });
  t.deepEqual(edited.writes.map((w) => w.path), [SSHD_DROP_IN, SSHD_INCLUDE_MARKER]);
  t.regex(edited.warnings[0]!, /no longer there as written: left as it is/);
});

function shellSyntax(text: string): Promise<string> {
  return new Promise((resolve) => execFile("sh", ["-n", "-c", text], (err, _out, stderr) => resolve(err ? stderr || String(err) : "")));
}

test("the change script: guards first, then every write, sshd -t, the checks, the backups, and last the reload (never by process name)", async (t) => {
  const f = facts(OPENSSH_10);
  const plan = planDropIn(state(f, { mainConfig: { text: "Port 22\n", sha256: "cd".repeat(32) } }), "pi");
  const text = changeSshdConfig(plan.writes, plan.checks).text;
  t.is(await shellSyntax(text), "");
  const at = (s: string) => {
    const i = text.indexOf(s);
    t.not(i, -1, s);
    return i;
  };
  const firstPut = at("\nput 0 ");
  t.true(at(`unchanged ${SSHD_CONFIG} ${"cd".repeat(32)} ||`) < firstPut);
  t.true(at(`unchanged ${SSHD_DROP_IN} '' ||`) < firstPut, "an absent file must still be absent");
  t.true(firstPut < at("\nput 1 /etc/ssh/sshd_config 644 755 '"));
  t.true(at("\nput 2 /etc/rtunnel/sshd-include-added 600 700 ") < at('out=$("$sshd" -t 2>&1)'));
  t.true(at('out=$("$sshd" -t 2>&1)') < at(`eff=$("$sshd" -T -C ${tunnelConnectionSpec("pi", "::1")} 2>&1)`));
  t.true(at("grep -qixF -- 'kbdinteractiveauthentication no'") < at("\nbackup 0 /etc/rtunnel/sshd-drop-in.rtunnel-backup"));
  t.true(at("\nbackup 1 /etc/ssh/sshd_config.rtunnel-backup") < at("systemctl reload $unit"));
  t.true(at("systemctl reload $unit") < at('how="kill -HUP $pid"'), "systemd first, then the PidFile's listener");
  t.notRegex(text, /pkill|killall|pidof/);
  t.regex(text, /restore\(\) \{\n {2}put_back 2 \S+\n {2}put_back 1 \S+\n {2}put_back 0 \S+\n/, "put back in reverse order");
  t.is(changeSshdConfig([], []).text.includes("restore() {\n  :\n}"), true);
});

test("the change script carries any file content as one quoted word: it parses, and no $(...) or quote in it runs", async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: "binary" }).map((s) => s.replaceAll("\0", "")), async (content) => {
      const script = changeSshdConfig([{ path: "/tmp/x y/'z'", text: content, mode: "644", dirMode: "755" }], [{ spec: "user=pi,addr=127.0.0.1", line: "passwordauthentication no" }]).text;
      return (await shellSyntax(script)) === "";
    }),
    { numRuns: 100 },
  );
  const script = changeSshdConfig([{ path: SSHD_DROP_IN, text: "$(touch /tmp/pwned) `id` 'q'\n", mode: "644", dirMode: "755" }], []).text;
  t.true(script.includes(`put 0 ${SSHD_DROP_IN} 644 755 '$(touch /tmp/pwned) \`id\` '\\''q'\\''\n'`));
});

test("sshd -t's complaint is its last line but the summary, without the \\r of sshd's stderr", (t) => {
  const out = "/etc/ssh/sshd_config.d/rtunnel.conf: line 1: Bad configuration option: NoSuchOption\r\n/etc/ssh/sshd_config.d/rtunnel.conf: terminating, 1 bad configuration options\r\n";
  t.is(sshdComplaint(out), "/etc/ssh/sshd_config.d/rtunnel.conf: line 1: Bad configuration option: NoSuchOption");
  t.is(sshdComplaint("/etc/ssh/sshd_config line 3: Directive 'X' is not allowed within a Match block\r\n"), "/etc/ssh/sshd_config line 3: Directive 'X' is not allowed within a Match block");
  t.is(sshdComplaint(""), undefined);
});

test("a later device-side setting is one more section: a user-CA section renders inside the Match block (or globally), gets its sshd -T checks and its place in the plan; two sections on one keyword are refused", (t) => {
  // What the certificate work would add (not a section of the kit yet): sshd -T knows trustedusercakeys on 9.2 and 10.
  const sshdT = `${OPENSSH_10}trustedusercakeys none\n`;
  const userCa = (scope: "global" | "tunnel"): DropInSection => ({
    id: "user-ca",
    directives: () => [{ keyword: "TrustedUserCAKeys", value: "/etc/ssh/rtunnel-user-ca.pub", scope, why: "Laptops may log in with a certificate of the kit's user CA." }],
  });
  const sections = [...DROP_IN_SECTIONS, userCa("tunnel")];
  const ds = tunnelDirectives(facts(sshdT), sections);
  const text = renderDropIn(ds);
  t.regex(text, /^Match Address 127\.0\.0\.1,::1\n(\t.*\n)*\tTrustedUserCAKeys \/etc\/ssh\/rtunnel-user-ca\.pub\n$/m);
  t.deepEqual(effectChecks(ds, "pi").filter((c) => c.line.startsWith("trustedusercakeys")).map((c) => c.spec), TUNNEL_SOURCES.map((a) => tunnelConnectionSpec("pi", a)));
  const global = renderDropIn(tunnelDirectives(facts(sshdT), [...DROP_IN_SECTIONS, userCa("global")]));
  t.true(global.indexOf("\nTrustedUserCAKeys ") < global.indexOf("\nMatch "), "a global line goes before the Match block");
  // The plan rewrites a drop-in of the old sections, and a re-run with the new ones changes nothing.
  const old = renderDropIn(tunnelDirectives(facts(sshdT)));
  const plan = planDropIn(state(facts(sshdT), { dropIn: { text: old } }), "pi", sections);
  t.deepEqual(plan.writes.map((w) => [w.path, w.text]), [[SSHD_DROP_IN, text]]);
  t.regex(plan.summary[0] ?? "", /^rewrite .*TrustedUserCAKeys \/etc\/ssh\/rtunnel-user-ca\.pub/);
  t.deepEqual(planDropIn(state(facts(sshdT), { dropIn: { text } }), "pi", sections).writes, []);
  // An sshd that does not know the keyword gets none of it, as with the penalty exemption on 9.2.
  t.false(tunnelDirectives(facts(OPENSSH_10), sections).some((d) => d.keyword === "TrustedUserCAKeys"));
  t.deepEqual(DROP_IN_SECTIONS.map((s) => s.id), ["penalty-exemption", "loopback-keys-only"]);
  const clash: DropInSection = { id: "clash", directives: () => [{ keyword: "passwordauthentication", value: "yes", scope: "tunnel", why: "" }] };
  t.throws(() => tunnelDirectives(facts(sshdT), [...DROP_IN_SECTIONS, clash]), { message: /loopback-keys-only and clash both set passwordauthentication \(tunnel\)/ });
});
