// The relay's side of fleet certificates (issue 15) without a container: the principals
// command (bash) with real certificates made by ssh-keygen, the log reader's rows for
// certificate logins, the admin verbs set-user-ca, set-krl, ca and render-ca, and set-krl,
// set-user-ca and remove ending the live certificate logins they must (the image's own reaper
// ends processes that play sshd-session). The Docker suite (relay-certs.docker.test.ts) proves
// the same against the real sshd.
import { execFileSync } from "node:child_process";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import fc from "fast-check";
import { grantPrincipal, keyId, parseKeyId, parsePrincipal, RELAY_CA_PATHS, SERIAL_MAX } from "../lib/contract/ca.ts";
import { RELAY_CERTIFICATES } from "../lib/contract/relay.ts";
import { waitFor } from "../lib/poll.ts";
import { filterAudit, resolveAudit } from "../provision/commands/audit.ts";
import { AuditAnswer, CaAnswer, ConnectionEvent, ListWithCertificatesAnswer, SetKrlAnswer, SetUserCaAnswer } from "../provision/relay/protocol.ts";
import { alive, certificateLogin, keygen, krlBase64, LIB, relayRoot, startReaper, tmp, type RelayRoot } from "./relay/root.ts";

const fpOf = (file: string) => execFileSync("ssh-keygen", ["-lf", file], { encoding: "utf8" }).split(" ")[1]!;
const safe = (fp: string) => fp.slice(7).replaceAll("/", "_").replaceAll("+", "-");

/** Signs `key`'s public half with the CA `ca` (files in `dir`); the certificate file. */
function sign(dir: string, o: { ca: string; key: string; id: string; principals: readonly string[]; serial: string; validity?: string }): string {
  execFileSync("ssh-keygen", ["-q", "-s", path.join(dir, o.ca), "-I", o.id, "-n", o.principals.join(","), "-z", o.serial, ...(o.validity ? ["-V", o.validity] : []), path.join(dir, `${o.key}.pub`)]);
  return path.join(dir, `${o.key}-cert.pub`);
}

/** A relay root with devices a (port 20000) and b (20001) registered, and a user CA. */
async function fleet(t: ExecutionContext, o: { proc?: "real" } = {}) {
  const dir = await tmp(t);
  const r = await relayRoot(dir, keygen(dir, "host").split(" ").slice(0, 2).join(" "), { proc: o.proc ?? "real" });
  for (const d of ["a", "b"]) t.is((await r.call(`add-device ${d}`, keygen(dir, d))).code, 0);
  const ca = keygen(dir, "ca");
  return { dir, r, ca };
}

const line = (...ports: number[]) => `restrict,port-forwarding,command="/usr/sbin/nologin",${ports.map((p) => `permitopen="127.0.0.1:${p}"`).join(",")}`;

test("the principals command turns a certificate's grant principal into one line with the ports of the devices the registry has, and records the login", async (t) => {
  const { dir, r } = await fleet(t);
  const cases: { what: string; type?: string; bits?: number; id: string; principals: string[]; want: string }[] = [
    { what: "a grant of a and b (ed25519)", id: "rtunnel:alice:11", principals: ["rtunnel-grant:a+b", "rtunnel-device:a", "rtunnel-device:b"], want: `${line(20000, 20001)} rtunnel-grant:a+b\n` },
    { what: "the grant principal after the device ones (ecdsa)", type: "ecdsa", id: "rtunnel:alice:12", principals: ["rtunnel-device:a", "rtunnel-grant:a"], want: `${line(20000)} rtunnel-grant:a\n` },
    { what: "an RSA key", type: "rsa", bits: 3072, id: "rtunnel:bob:13", principals: ["rtunnel-grant:b"], want: `${line(20001)} rtunnel-grant:b\n` },
    { what: "a device the registry does not have is left out", id: "rtunnel:alice:14", principals: ["rtunnel-grant:a+zz"], want: `${line(20000)} rtunnel-grant:a+zz\n` },
    { what: "only unknown devices: no line (no permitopen would mean any)", id: "rtunnel:alice:15", principals: ["rtunnel-grant:yy+zz"], want: "" },
    { what: "a grant not in the kit's spelling (unsorted)", id: "rtunnel:alice:16", principals: ["rtunnel-grant:b+a"], want: "" },
    { what: "no grant principal (a device principal only)", id: "rtunnel:alice:17", principals: ["rtunnel-device:a"], want: "" },
    { what: "a key id that is not the kit's", id: "alice", principals: ["rtunnel-grant:a"], want: "" },
    { what: "a principal like the grant but longer", id: "rtunnel:alice:18", principals: ["rtunnel-grant:a:b", "xrtunnel-grant:a", "rtunnel-grant:a "], want: "" },
  ];
  let n = 0;
  for (const c of cases) {
    const key = `k${n++}`;
    keygen(dir, key, c.type ?? "ed25519", c.bits);
    const serial = c.id.split(":")[2] ?? "99";
    const cert = sign(dir, { ca: "ca", key, id: c.id, principals: c.principals, serial });
    const login = await certificateLogin(t, r, { certFile: cert, caFile: path.join(dir, "ca.pub"), keyId: c.id, serial, client: `10.0.0.${n} 4000${n}` });
    t.is(login.line, c.want, c.what);
    // The record: the connection's pid and start time in its name, like the key lookup's.
    const rec = (await readFile(path.join(r.runDir, "sessions", `${login.pid}.${login.start}.jump.${safe(fpOf(cert))}.cert`), "utf8")).split("\n");
    t.is(rec[0], `10.0.0.${n} 4000${n} 10.9.9.9 2222`, c.what);
    const grant = c.want ? c.want.trim().split(" rtunnel-grant:")[1] : /^rtunnel:/.test(c.id) && c.principals.some((p) => parsePrincipal(p)?.kind === "grant") ? "?" : "-";
    if (grant !== "?") t.is(rec[3], `cert ${serial} ${fpOf(path.join(dir, "ca.pub"))} ${c.id} ${grant}`, c.what);
    t.is(rec[4], (await readFile(cert, "utf8")).split(" ")[1], c.what);
    login.end();
  }
});

test("the principals command holds the jump limit on authenticated logins only: records of key queries do not count", async (t) => {
  const { dir, r } = await fleet(t);
  await writeFile(path.join(r.runDir, "limits"), "tunnel 2\njump 2\nadmin 4\n");
  keygen(dir, "lap");
  const cert = sign(dir, { ca: "ca", key: "lap", id: "rtunnel:lap:5", principals: ["rtunnel-grant:a"], serial: "5" });
  const ca = path.join(dir, "ca.pub");
  const logins = [];
  // Three logins reach the lookup (three records) but none is authenticated yet: all get the line.
  for (let i = 0; i < 3; i++) {
    const l = await certificateLogin(t, r, { certFile: cert, caFile: ca, keyId: "rtunnel:lap:5", serial: "5", client: `10.0.0.1 5000${i}` });
    t.is(l.line, `${line(20000)} rtunnel-grant:a\n`);
    logins.push(l);
  }
  // sshd accepts two of them: the log reader makes their online markers.
  const caFp = fpOf(ca);
  const accepted = [0, 1].map((i) => `Accepted publickey for jump from 10.0.0.1 port 5000${i} ssh2: ED25519-CERT ${fpOf(cert)} ID rtunnel:lap:5 (serial 5) CA ED25519 ${caFp}\n`).join("");
  t.is((await r.helper("rtunneld-connlog", [], accepted)).code, 0);
  t.is((await readdir(path.join(r.runDir, "online"))).length, 2);
  // The fourth is refused, and the client offers the bare key next on that connection: the key
  // lookup's record of it is another file, so the log reader still reads the refusal's reason.
  const fourth = await certificateLogin(t, r, { certFile: cert, caFile: ca, keyId: "rtunnel:lap:5", serial: "5", client: "10.0.0.1 50009", thenBareKey: true });
  t.is(fourth.line, "", "at its limit of 2 authenticated logins: no line");
  const rec = (await readFile(path.join(r.runDir, "sessions", `${fourth.pid}.${fourth.start}.jump.${safe(fpOf(cert))}.cert`), "utf8")).split("\n");
  t.is(rec[2], "limit 2");
  t.is(await readFile(path.join(r.runDir, "sessions", `${fourth.pid}.${fourth.start}.jump.${safe(fpOf(cert))}`), "utf8"), "10.0.0.1 50009 10.9.9.9 2222\n\n", "the bare key's record, beside it");
  // sshd's refusals: the certificate's becomes a limit row with its key id and serial; the bare key's an unknown key.
  const failed = [
    `Failed publickey for jump from 10.0.0.1 port 50009 ssh2: ED25519-CERT ${fpOf(cert)} ID rtunnel:lap:5 (serial 5) CA ED25519 ${caFp}\n`,
    `Failed publickey for jump from 10.0.0.1 port 50009 ssh2: ED25519 ${fpOf(cert)}\n`,
  ].join("");
  t.is((await r.helper("rtunneld-connlog", [], failed)).code, 0);
  const rows = (await readFile(path.join(r.stateDir, "connections", "connections.log"), "utf8")).trim().split("\n").map((l) => ConnectionEvent.parse({ ...JSON.parse(l), type: "connection" }));
  t.like(rows.at(-2), { account: "jump", key: null, pid: fourth.pid, refused: "limit", limit: 2, keyId: "rtunnel:lap:5", serial: "5", ca: caFp });
  t.like(rows.at(-1), { account: "jump", key: null, pid: fourth.pid, refused: "unknown-key", keyId: undefined });
  t.like(rows[0], { key: null, keyId: "rtunnel:lap:5", serial: "5", devices: ["a"], refused: undefined });
});

test("the log reader: certificate logins become rows with key id, serial and CA, refusals say certificate; plain keys as before, sk keys' signature count too", async (t) => {
  const { dir, r } = await fleet(t);
  const caFp = fpOf(path.join(dir, "ca.pub"));
  const fp = fpOf(path.join(dir, "a.pub"));
  const lines = [
    // a certificate from a CA that is not trusted, with a key id that is not JSON-safe
    `Failed publickey for jump from 10.0.0.1 port 1 ssh2: ED25519-CERT ${fp} ID x" (serial 1) CA ED25519 SHA256:${"A".repeat(43)} (serial 7) CA ED25519 ${caFp}`,
    `Failed publickey for tunnel from 10.0.0.1 port 2 ssh2: ECDSA-CERT ${fp} ID rtunnel:a:3 (serial 3) CA ED25519 ${caFp}`,
    `Accepted publickey for jump from 10.0.0.1 port 3 ssh2: ED25519-SK-CERT ${fp} ID rtunnel:a:4 (serial 4) CA ED25519 ${caFp}, signature count = 12`,
    `Accepted publickey for tunnel from 10.0.0.1 port 4 ssh2: ED25519-SK ${fp}, signature count = 3`,
    `Accepted publickey for tunnel from 10.0.0.1 port 5 ssh2: ED25519 ${fp}`,
    "Connection closed by 10.0.0.1 port 6",
  ];
  const res = await r.helper("rtunneld-connlog", [], `${lines.join("\n")}\n`);
  t.is(res.stderr.split("\n").filter((l) => !l.startsWith("rtunneld-connlog: ")).join("\n"), `${lines.join("\n")}\n`, "every line passed on unchanged");
  const rows = (await readFile(path.join(r.stateDir, "connections", "connections.log"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const row of rows) t.true(ConnectionEvent.safeParse({ ...row, type: "connection" }).success, JSON.stringify(row));
  t.deepEqual(rows.map((x) => [x.account, x.refused ?? "in", x.keyId ?? "-", x.serial ?? "-", x.ca ?? "-"]), [
    ["jump", "certificate", "-", "7", caFp],
    ["tunnel", "certificate", "rtunnel:a:3", "3", caFp],
    ["jump", "in", "rtunnel:a:4", "4", caFp],
    ["tunnel", "in", "-", "-", "-"],
    ["tunnel", "in", "-", "-", "-"],
  ]);
  t.regex(res.stderr, new RegExp(`^rtunneld-connlog: jump key ${fp.replace(/[+/]/g, "\\$&")} is certificate:rtunnel:a:4 \\(serial 4\\) \\(connection pid null\\)$`, "m"));
});

test("bash and ca.ts agree on the key ids and the grant principals that are the kit's (fast-check)", async (t) => {
  const name = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,8}$/);
  const serial = fc.oneof(fc.bigInt({ min: 1n, max: SERIAL_MAX }), fc.constantFrom(SERIAL_MAX, SERIAL_MAX + 1n, 0n, 10n ** 19n, 10n ** 20n));
  const ids = fc.sample(fc.oneof(
    fc.tuple(name, serial).map(([n, s]) => (s >= 1n && s <= SERIAL_MAX ? keyId(n, s) : `rtunnel:${n}:${s}`)),
    fc.tuple(name, serial).map(([n, s]) => `rtunnel:${n}:0${s}`),
    fc.string({ maxLength: 30 }).map((x) => `rtunnel:${x}`),
    fc.constantFrom("rtunnel:a:1", "rtunnel:A:1", "rtunnel::1", "rtunnel:a:", "rtunnel:a:1:2", "rtunnel:-a:1", `rtunnel:${"a".repeat(64)}:1`),
  ), 300);
  const grants = fc.sample(fc.oneof(
    fc.uniqueArray(name, { minLength: 1, maxLength: 5 }).map((d) => grantPrincipal(d)),
    fc.array(name, { minLength: 1, maxLength: 5 }).map((d) => `rtunnel-grant:${d.join("+")}`),
    fc.string({ maxLength: 20 }).map((x) => `rtunnel-grant:${x}`),
    fc.constantFrom("rtunnel-grant:", "rtunnel-grant:a+", "rtunnel-grant:+a", "rtunnel-grant:a-b+a0", "rtunnel-grant:a0+a-b", "rtunnel-device:a"),
  ), 300);
  // One bash for all of them: each line in, "1 HOLDER" / "1 DEVICES" or "0" out.
  const script = `. "$1"; while IFS= read -r kind && IFS= read -r text; do if [[ $kind == id ]]; then kit_key_id "$text"; else kit_grant "$text"; fi && echo "1 $REPLY" || echo 0; done`;
  const input = [...ids.map((i) => `id\n${i}`), ...grants.map((g) => `grant\n${g}`)].join("\n") + "\n";
  t.false(/[\n\r]/.test([...ids, ...grants].join("")), "the generator's strings are one line each");
  const out = execFileSync("bash", ["-c", script, "bash", LIB], { input, encoding: "utf8" }).trim().split("\n");
  const want = [
    ...ids.map((i) => (parseKeyId(i) ? `1 ${parseKeyId(i)!.name}` : "0")),
    ...grants.map((g) => {
      const p = parsePrincipal(g);
      return p?.kind === "grant" ? `1 ${p.devices.join("+")}` : "0";
    }),
  ];
  t.deepEqual(out, want);
  t.true(want.filter((w) => w === "0").length > 50 && want.filter((w) => w !== "0").length > 50, "both kinds of answer were tried");
});

test("set-user-ca, ca and set-krl: the trust in the state volume and where sshd reads it, one line and nothing written on bad input, audit rows of type trust", async (t) => {
  const { dir, r, ca } = await fleet(t, {});
  const rs = async (words: string, input = "") => r.call(words, input);
  const json = async (words: string, input = "") => {
    const res = await rs(words, input);
    t.is(res.code, 0, `${words}: ${res.stderr}`);
    return JSON.parse(res.stdout) as unknown;
  };
  t.deepEqual(CaAnswer.parse(await json("ca")), { userCa: [], krl: null }, "nothing set: no CA, no KRL");
  const ca2 = keygen(dir, "ca2", "ecdsa");
  const caFp = fpOf(path.join(dir, "ca.pub"));
  const ca2Fp = fpOf(path.join(dir, "ca2.pub"));
  t.deepEqual(SetUserCaAnswer.parse(await json("set-user-ca", `# the fleet's user CA\n${ca}\n\n${ca2}\n${ca}\n`)), { userCa: [caFp, ca2Fp] });
  const lines = (f: string) => readFile(r.at(f), "utf8");
  const bare = (k: string) => k.split(" ").slice(0, 2).join(" ");
  t.is(await lines(RELAY_CA_PATHS.userCa), `${bare(ca)}\n${bare(ca2)}\n`);
  t.is(await readFile(path.join(r.runDir, "ca", "user_ca.pub"), "utf8"), `${bare(ca)}\n${bare(ca2)}\n`);

  const before = await r.state();
  const bad: [string, string, string, RegExp][] = [
    ["set-user-ca", "an option before the key", `cert-authority ${ca}`, /CA key 1: the key carries options/],
    ["set-user-ca", "a private key", await readFile(path.join(dir, "ca"), "utf8"), /PRIVATE key/],
    ["set-user-ca", "a certificate", await readFile(sign(dir, { ca: "ca", key: "a", id: "rtunnel:a:1", principals: ["x"], serial: "1" }), "utf8"), /CA key 1: unsupported key type/],
    ["set-user-ca", "a registered device key", await readFile(path.join(dir, "a.pub"), "utf8"), /is registered as device a; a CA key must be its own/],
    ["set-user-ca", "too many keys", Array.from({ length: RELAY_CERTIFICATES.maxUserCaKeys + 1 }, (_, i) => keygen(dir, `many${i}`)).join("\n"), /at most 8 CA keys/],
    ["set-user-ca", "a second bad line", `${ca}\nssh-ed25519 AAAA`, /CA key 2:/],
    ["set-user-ca x", "a word after the verb", ca, /takes no arguments/],
    ["set-krl", "nothing", "", /no KRL on stdin/],
    ["set-krl", "not base64", "SSHKRL\n", /not valid base64/],
    ["set-krl", "not base64 at all", "SSHKRL\0\n", /one line of base64/],
    ["set-krl", "two lines", `${await krlBase64(dir)}\n${await krlBase64(dir)}\n`, /one line of base64/],
    ["set-krl", "not a KRL", Buffer.from("hello world").toString("base64"), /not an OpenSSH KRL/],
    ["set-krl", "a cut KRL", Buffer.from(await krlBase64(dir), "base64").subarray(0, 30).toString("base64"), /ssh-keygen does not accept the KRL on stdin/],
    ["set-krl", "too large", "A".repeat(2_000_000), /larger than 1048576 bytes/],
    ["ca --all", "a word after ca", "", /ca takes no arguments/],
    ["render-ca", "an entrypoint verb over ssh", "", /unknown command "render-ca"/],
  ];
  for (const [words, what, input, re] of bad) {
    const res = await rs(words, input);
    t.not(res.code, 0, what);
    t.regex(res.stderr, /^rtunneld-admin: .+\n$/, `${what}: one line`);
    t.regex(res.stderr, re, what);
    t.is(res.stdout, "", what);
    t.is(await r.state(), before, `${what}: nothing written`);
  }

  // A KRL that revokes the operator's admin key (RevokedKeys covers every account) is refused;
  // a CA key is no login key, and a login key no CA key.
  const admin = keygen(dir, "admin");
  t.is((await r.local(["admin-keys", path.join(r.runDir, "admin-keys")], `${admin}\n`)).code, 0);
  await writeFile(path.join(dir, "admin.revoke"), `${admin}\n`);
  const lockout = await rs("set-krl", await krlBase64(dir, { keys: [path.join(dir, "admin.revoke")] }));
  t.is(lockout.code, 3);
  t.regex(lockout.stderr, /^rtunneld-admin: this KRL revokes admin key 1 of the relay: it would lock the operator out/);
  t.is(await r.state(), before, "nothing written");
  const caAsLogin = await rs("add-client lap --devices a", ca);
  t.is(caAsLogin.code, 3);
  t.regex(caAsLogin.stderr, /is the relay's user CA/);
  t.is(await r.state(), before, "nothing written");

  const krl = await krlBase64(dir, { ca: path.join(dir, "ca.pub"), serials: ["11"], ids: ["rtunnel:bob:12"], version: 7 });
  const raw = Buffer.from(krl, "base64");
  const set = SetKrlAnswer.parse(await json("set-krl", `${krl}\n`));
  t.deepEqual(set, { krl: { sha256: execFileSync("sha256sum", { input: raw, encoding: "utf8" }).split(" ")[0]!, bytes: raw.length, version: 7 } }, "the KRL's own version (ssh-keygen -k -z)");
  t.deepEqual(await readFile(r.at(RELAY_CA_PATHS.krl)), raw);
  t.deepEqual(await readFile(path.join(r.runDir, "ca", "revoked.krl")), raw);
  const now = CaAnswer.parse(await json("ca"));
  t.like(now, { userCa: [caFp, ca2Fp], krl: set.krl });
  t.regex(now.krl!.setAt, /^\d{4}-/);
  // An empty stdin trusts no CA any more (the KRL stays).
  t.deepEqual(SetUserCaAnswer.parse(await json("set-user-ca", "")), { userCa: [] });
  t.is(await lines(RELAY_CA_PATHS.userCa), "");
  const audit = AuditAnswer.parse(await json("audit"));
  t.deepEqual(audit.filter((e) => e.type === "trust").map((e) => (e.verb === "set-user-ca" ? `${e.verb} ${e.userCa.length}` : `${e.verb} ${e.bytes}`)), ["set-user-ca 2", `set-krl ${raw.length}`, "set-user-ca 0"]);
});

test("render-ca (the entrypoint): an empty KRL when none was set, the stored trust otherwise, and a stored KRL or CA file that does not read stops the relay", async (t) => {
  const { dir, r, ca } = await fleet(t, {});
  const rendered = await r.local(["render-ca"]);
  t.is(rendered.code, 0, rendered.stderr);
  t.regex(rendered.stdout, /^user CA: none \(no certificate is trusted\); KRL: none set \(an empty one\)\n$/);
  const empty = await readFile(path.join(r.runDir, "ca", "revoked.krl"));
  t.is(empty.subarray(0, 8).toString("latin1"), "SSHKRL\n\0");
  t.is(execFileSync("ssh-keygen", ["-Q", "-l", "-f", path.join(r.runDir, "ca", "revoked.krl")], { encoding: "utf8" }).includes("KRL version"), true);
  t.is(await readFile(path.join(r.runDir, "ca", "user_ca.pub"), "utf8"), "");
  // A relay replaced on the same volume: the runtime files are gone, the state is not.
  t.is((await r.call("set-user-ca", ca)).code, 0);
  const krl = await krlBase64(dir, { ca: path.join(dir, "ca.pub"), serials: ["7"] });
  t.is((await r.call("set-krl", krl)).code, 0);
  await writeFile(path.join(r.runDir, "ca", "user_ca.pub"), "");
  await writeFile(path.join(r.runDir, "ca", "revoked.krl"), "");
  const again = await r.local(["render-ca"]);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, new RegExp(`^user CA: ${fpOf(path.join(dir, "ca.pub")).replace(/[+/]/g, "\\$&")}; KRL: version 0, ${Buffer.from(krl, "base64").length} bytes`));
  t.deepEqual(await readFile(path.join(r.runDir, "ca", "revoked.krl")), Buffer.from(krl, "base64"));
  t.is(await readFile(path.join(r.runDir, "ca", "user_ca.pub"), "utf8"), `${ca.split(" ").slice(0, 2).join(" ")}\n`);
  // A torn KRL in the state volume: refused with one line, nothing rendered over the runtime file.
  await writeFile(r.at(RELAY_CA_PATHS.krl), Buffer.from(krl, "base64").subarray(0, 20));
  const torn = await r.local(["render-ca"]);
  t.is(torn.code, 1);
  t.regex(torn.stderr, /^rtunneld-admin: .*revoked\.krl.*set-krl\)\n$/);
  t.deepEqual(await readFile(path.join(r.runDir, "ca", "revoked.krl")), Buffer.from(krl, "base64"));
  // So does a CA file that is not CA keys.
  await writeFile(r.at(RELAY_CA_PATHS.krl), Buffer.from(krl, "base64"));
  await writeFile(r.at(RELAY_CA_PATHS.userCa), `restrict ${ca}\n`);
  const badCa = await r.local(["render-ca"]);
  t.is(badCa.code, 1);
  t.regex(badCa.stderr, /^rtunneld-admin: .*user_ca\.pub.*set-user-ca\)\n$/);
});

/** A certificate login that sshd accepted: the principals command ran in its connection, the log reader saw "Accepted". */
async function loggedIn(t: ExecutionContext, r: RelayRoot, dir: string, o: { key: string; id: string; serial: string; grant: string[]; ca?: string; port: number }) {
  keygen(dir, o.key);
  const caFile = o.ca ?? "ca";
  const cert = sign(dir, { ca: caFile, key: o.key, id: o.id, principals: [grantPrincipal(o.grant)], serial: o.serial });
  const login = await certificateLogin(t, r, { certFile: cert, caFile: path.join(dir, `${caFile}.pub`), keyId: o.id, serial: o.serial, client: `10.0.0.7 ${o.port}` });
  t.not(login.line, "", `${o.id} got its line`);
  const accepted = `Accepted publickey for jump from 10.0.0.7 port ${o.port} ssh2: ED25519-CERT ${fpOf(cert)} ID ${o.id} (serial ${o.serial}) CA ED25519 ${fpOf(path.join(dir, `${caFile}.pub`))}\n`;
  t.is((await r.helper("rtunneld-connlog", [], accepted)).code, 0);
  return login;
}

test("set-krl ends the live logins of the certificates it revokes and no other; set-user-ca those of a CA no longer trusted; remove those whose grant names the device; list shows certificate logins", async (t) => {
  const { dir, r, ca } = await fleet(t);
  const reaper = await startReaper(t, r);
  const ca2 = keygen(dir, "ca2");
  t.is((await r.call("set-user-ca", `${ca}\n${ca2}\n`)).code, 0);
  const revokedBySerial = await loggedIn(t, r, dir, { key: "l1", id: "rtunnel:alice:101", serial: "101", grant: ["a"], port: 41001 });
  const revokedById = await loggedIn(t, r, dir, { key: "l2", id: "rtunnel:bob:102", serial: "102", grant: ["a", "b"], port: 41002 });
  const kept = await loggedIn(t, r, dir, { key: "l3", id: "rtunnel:carol:103", serial: "103", grant: ["b"], port: 41003 });
  const otherCa = await loggedIn(t, r, dir, { key: "l4", id: "rtunnel:dave:101", serial: "101", grant: ["b"], ca: "ca2", port: 41004 });

  const list = ListWithCertificatesAnswer.parse(JSON.parse((await r.call("list")).stdout));
  const certs = list.filter((e) => e.kind === "certificate");
  t.deepEqual(certs.map((c) => [c.keyId, c.serial, c.holder, c.devices, c.connections, c.limit]).sort(), [
    ["rtunnel:alice:101", "101", "alice", ["a"], 1, 32], ["rtunnel:bob:102", "102", "bob", ["a", "b"], 1, 32],
    ["rtunnel:carol:103", "103", "carol", ["b"], 1, 32], ["rtunnel:dave:101", "101", "dave", ["b"], 1, 32],
  ]);
  t.deepEqual(list.slice(0, 2).map((e) => (e.kind === "device" ? e.name : e.kind)), ["a", "b"], "the registry's rows come first, as before");

  // Serial 101 of the first CA, and key id rtunnel:bob:102: dave's serial 101 is another CA's.
  const krl = await krlBase64(dir, { ca: path.join(dir, "ca.pub"), serials: ["101"], ids: ["rtunnel:bob:102"] });
  const set = await r.call("set-krl", krl);
  t.is(set.code, 0, set.stderr);
  t.like(SetKrlAnswer.parse(JSON.parse(set.stdout)), { sessionsEnded: true });
  await waitFor("the revoked logins to end", async () => !(await alive(revokedBySerial.pid)) && !(await alive(revokedById.pid)), { tries: 240, intervalMs: 250 });
  t.true(await alive(kept.pid), "a certificate the KRL does not name stays");
  t.true(await alive(otherCa.pid), "the same serial of another CA stays");
  t.regex(reaper.log(), new RegExp(`ended connection pid ${revokedBySerial.pid}: its certificate is revoked`));
  // The same KRL again: nothing left to end, no sessionsEnded in the answer.
  t.deepEqual(Object.keys(SetKrlAnswer.parse(JSON.parse((await r.call("set-krl", krl)).stdout))), ["krl"]);

  // The second CA is no longer trusted: dave's login ends, carol's stays.
  const untrust = await r.call("set-user-ca", ca);
  t.deepEqual(SetUserCaAnswer.parse(JSON.parse(untrust.stdout)), { userCa: [fpOf(path.join(dir, "ca.pub"))], sessionsEnded: true });
  await waitFor("the login of the CA no longer trusted to end", async () => !(await alive(otherCa.pid)), { tries: 240, intervalMs: 250 });
  t.true(await alive(kept.pid));

  // Removing device b ends carol's login (its grant names b); a login granted only a stays.
  const onlyA = await loggedIn(t, r, dir, { key: "l5", id: "rtunnel:erin:105", serial: "105", grant: ["a"], port: 41005 });
  const removed = await r.call("remove b");
  t.is(removed.code, 0, removed.stderr);
  await waitFor("the login granted the removed device to end", async () => !(await alive(kept.pid)), { tries: 240, intervalMs: 250 });
  t.true(await alive(onlyA.pid));
  t.regex(reaper.log(), /its certificate's grant names a removed device/);
});

test("the protocol refuses certificate answers the CLI does not understand: a serial that is no 64-bit number, a key id not the kit's, a KRL digest not hex, too many CA keys", (t) => {
  const [, withCert] = JSON.parse(execFileSync("cat", [path.join(import.meta.dirname, "fixtures", "protocol", "list.json")], { encoding: "utf8" })) as Record<string, unknown>[][];
  const cert = withCert!.find((e) => e.kind === "certificate")!;
  t.true(ListWithCertificatesAnswer.safeParse([cert]).success);
  for (const bad of [{ serial: "0" }, { serial: "18446744073709551616" }, { serial: 7 }, { keyId: "alice" }, { holder: "Alice" }, { connections: 0 }, { online: false }]) {
    t.false(ListWithCertificatesAnswer.safeParse([{ ...cert, ...bad }]).success, JSON.stringify(bad));
  }
  t.false(SetKrlAnswer.safeParse({ krl: { sha256: "A".repeat(64), bytes: 44, version: 0 } }).success);
  t.false(SetKrlAnswer.safeParse({ krl: { sha256: "a".repeat(64), bytes: RELAY_CERTIFICATES.maxKrlBytes + 1, version: 0 } }).success);
  t.false(SetKrlAnswer.safeParse({ krl: { sha256: "a".repeat(64), bytes: 44 } }).success, "a KRL without its version");
  t.false(SetUserCaAnswer.safeParse({ userCa: Array(RELAY_CERTIFICATES.maxUserCaKeys + 1).fill(`SHA256:${"A".repeat(43)}`) }).success);
  t.false(CaAnswer.safeParse({ userCa: [], krl: { sha256: "a".repeat(64), bytes: 44, version: 0 } }).success, "a KRL without setAt");
});

test("the CLI's audit names a certificate login by its holder, key id and serial, a refusal by its reason, and a trust change by its verb", (t) => {
  const T = (s: number) => `2026-12-01T11:00:0${s}Z`;
  const fp = `SHA256:${"y".repeat(43)}`;
  const ca = `SHA256:${"c".repeat(43)}`;
  const events = AuditAnswer.parse([
    { time: T(0), type: "trust", verb: "set-user-ca", userCa: [ca], from: "203.0.113.9" },
    { time: T(1), type: "trust", verb: "set-krl", sha256: "a".repeat(64), bytes: 44, version: 3, from: "203.0.113.9" },
    { time: T(2), type: "connection", account: "jump", fingerprint: fp, key: null, pid: 5, keyId: "rtunnel:alice:11", serial: "11", ca, devices: ["a", "b"] },
    { time: T(3), type: "connection", account: "jump", fingerprint: fp, key: null, pid: 6, refused: "limit", limit: 2, keyId: "rtunnel:alice:11", serial: "11", ca },
    { time: T(4), type: "connection", account: "jump", fingerprint: fp, key: null, pid: null, refused: "certificate", serial: "12", ca },
  ]);
  const rows = resolveAudit(events);
  t.deepEqual(rows.map((r) => [r.event, r.who, r.device]), [
    ["set-user-ca", "-", "-"], ["set-krl", "-", "-"], ["connect", "alice", "one of a,b"], ["refused", "alice", "-"], ["refused", "unknown jump certificate", "-"],
  ]);
  t.regex(rows[2]!.detail, /certificate rtunnel:alice:11 \(serial 11\)/);
  t.regex(rows[3]!.detail, /limit of 2 live connections/);
  t.regex(rows[0]!.detail, /jump trusts the user CA SHA256:cccc.*admin from 203\.0\.113\.9/);
  t.regex(rows[1]!.detail, /revocation list version 3 set/);
  t.deepEqual(filterAudit(rows, { name: "alice" }).length, 2);
  t.deepEqual(filterAudit(rows, { name: "b" }).map((r) => r.who), ["alice"]);
});
