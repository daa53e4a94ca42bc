// Fleet certificates on the relay (issue 15), against the real sshd: certificates made by
// ssh-keygen in the client container with a throwaway user CA and absolute validity windows.
// A certificate's grant opens its devices' ports and no other; one whose window lies wholly
// in the past, one with a principal that is no grant, one of an untrusted CA and a revoked
// one are refused (each on record with its key id and serial); revoking ends a live login;
// certificate logins count against the jump limit and `remove` ends those granted the
// device; a relay replaced on its volume keeps the CA and the KRL. Without a CA the relay
// answers as it always did (and every older relay test runs unchanged). Nothing waits for a
// duration: every step ends on the relay's answer or a log line, polled with a bound.
import test from "ava";
import { RELAY_CA_PATHS } from "../lib/contract/ca.ts";
import { sh } from "../lib/shell.ts";
import { docker, ensureDocker, exec, useScope, waitFor } from "./bed/index.ts";
import { CaAnswer, ListWithCertificatesAnswer, SetKrlAnswer, SetUserCaAnswer, type AuditEvent, type ConnectionEvent } from "../provision/relay/protocol.ts";
import { type Relay, startRelay } from "./relay/fixture.ts";
import { holds } from "./relay/holds.ts";

test.before(async () => {
  await ensureDocker();
});

/** YYYYMMDDHHMMSSZ, ssh-keygen's absolute UTC time. */
const utc = (d: Date) => `${d.toISOString().slice(0, 19).replace(/[-:T]/g, "")}Z`;
/** A window from 5 minutes ago (the kit's backdating) to an hour from now. */
const current = () => `${utc(new Date(Date.now() - 5 * 60_000))}:${utc(new Date(Date.now() + 60 * 60_000))}`;

/** The user CAs and certificates of a test, made in the client container (/k/NAME, /k/certs/TAG-cert.pub). */
function certificates(r: Relay) {
  let n = 0;
  return {
    /** A CA key pair /k/NAME (made once); its public line. */
    async ca(name: string): Promise<string> {
      const file = `/k/${name}`;
      return (await exec(r.client, ["sh", "-c", sh`test -f ${file} || ssh-keygen -q -t ed25519 -N '' -C ${name} -f ${file}; cat ${`${file}.pub`}`.text])).stdout.trim();
    },
    /** Signs /k/KEY.pub with /k/CA; the certificate's path (KEY's own -cert.pub is never made: ssh would load it by itself). */
    async sign(o: { ca: string; key: string; id: string; serial: string; principals: readonly string[]; validity?: string }): Promise<string> {
      const tag = `c${++n}`;
      const pub = `/k/certs/${tag}.pub`;
      await r.key(o.key);
      await exec(r.client, ["sh", "-c", sh`mkdir -p /k/certs && cp ${`/k/${o.key}.pub`} ${pub} && ssh-keygen -q -s ${`/k/${o.ca}`} -I ${o.id} -n ${o.principals.join(",")} -z ${o.serial} -V ${o.validity ?? current()} ${pub}`.text]);
      return `/k/certs/${tag}-cert.pub`;
    },
    /** Base64 of a KRL of /k/CA revoking these serials (one line). */
    async krl(ca: string, serials: readonly string[]): Promise<string> {
      const spec = serials.map((s) => `serial: ${s}\n`).join("");
      const tag = `krl${++n}`;
      const res = await exec(r.client, ["sh", "-c", sh`cat > ${`/k/${tag}.spec`} && ssh-keygen -q -k -f ${`/k/${tag}`} -s ${`/k/${ca}.pub`} ${`/k/${tag}.spec`} && base64 -w0 ${`/k/${tag}`}`.text], { input: spec });
      return res.stdout.trim();
    },
    fingerprint: async (file: string) => (await exec(r.client, ["ssh-keygen", "-lf", file])).stdout.split(" ")[1]!,
  };
}

/** `ssh -W 127.0.0.1:PORT` through the relay as jump with KEY's certificate (the key itself is not registered). */
const jumpWith = (r: Relay, key: string, cert: string, port: number) => r.ssh(key, "jump", ["-o", `CertificateFile=${cert}`, "-W", `127.0.0.1:${port}`]);

const DENIED = /Permission denied \(publickey\)/;
const PROHIBITED = /administratively prohibited|open failed/;

/** How many certificate logins of this key the relay's log reader has let in. */
async function admitted(r: Relay, fp: string): Promise<number> {
  const log = (await docker(["logs", r.container])).stderr;
  return log.split("\n").filter((l) => l.startsWith(`rtunneld-connlog: jump key ${fp} is certificate:`)).length;
}

const certRows = (events: AuditEvent[]) => events.filter((e): e is ConnectionEvent => e.type === "connection" && e.serial !== undefined);

test("[docker] a certificate's grant opens its devices' ports through -W and no other; past, wrong-principal and untrusted certificates are refused; audit names each by key id and serial; without a CA the relay refuses certificates and answers as before", async (t) => {
  t.timeout(20 * 60_000);
  const scope = useScope(t);
  const r = await startRelay(scope);
  const c = certificates(r);
  const a = await r.adminJson<{ port: number }>(["add-device", "a"], await r.key("deva"));
  const b = await r.adminJson<{ port: number }>(["add-device", "b"], await r.key("devb"));
  await r.tunnel("deva", a.port);
  await r.tunnel("devb", b.port);

  // No CA set: nothing is trusted, and list carries no certificate rows.
  const ca = await c.ca("userca");
  t.deepEqual(CaAnswer.parse(await r.adminJson(["ca"])), { userCa: [], krl: null });
  const early = await c.sign({ ca: "userca", key: "lap", id: "rtunnel:lap:1", serial: "1", principals: ["rtunnel-grant:a", "rtunnel-device:a"] });
  t.regex((await jumpWith(r, "lap", early, a.port)).stderr, DENIED, "no CA trusted yet");
  t.false((await r.adminJson<{ kind: string }[]>(["list"])).some((e) => e.kind === "certificate"));

  const set = SetUserCaAnswer.parse(await r.adminJson(["set-user-ca"], `${ca}\n`));
  t.deepEqual(set, { userCa: [await c.fingerprint("/k/userca.pub")] });
  t.deepEqual(CaAnswer.parse(await r.adminJson(["ca"])), { userCa: set.userCa, krl: null });

  // A grant of a: a's port answers with the device's sshd, b's is refused by the relay.
  const granted = await jumpWith(r, "lap", early, a.port);
  t.is(granted.code, 0, granted.stderr);
  t.regex(granted.stdout, /^SSH-2\.0-/);
  const other = await jumpWith(r, "lap", early, b.port);
  t.is(other.code, 255);
  t.regex(other.stderr, PROHIBITED);
  t.notRegex(other.stdout, /SSH-2\.0/);
  // A grant of a and b opens both.
  const both = await c.sign({ ca: "userca", key: "lap", id: "rtunnel:lap:2", serial: "2", principals: ["rtunnel-grant:a+b", "rtunnel-device:a", "rtunnel-device:b"] });
  for (const port of [a.port, b.port]) t.regex((await jumpWith(r, "lap", both, port)).stdout, /^SSH-2\.0-/, `port ${port}`);

  // Refused: a window wholly in the past; no grant principal; a CA the relay does not trust
  // (sshd says why in its log for the first two; the third is not in TrustedUserCAKeys).
  await c.ca("rogue");
  const refused: [string, string, RegExp | undefined][] = [
    ["expired", await c.sign({ ca: "userca", key: "lap", id: "rtunnel:lap:3", serial: "3", principals: ["rtunnel-grant:a"], validity: "20200101000000Z:20200102000000Z" }), /Certificate invalid: expired/],
    ["a device principal only", await c.sign({ ca: "userca", key: "lap", id: "rtunnel:lap:4", serial: "4", principals: ["rtunnel-device:a"] }), /Certificate does not contain an authorized principal/],
    ["another CA", await c.sign({ ca: "rogue", key: "lap", id: "rtunnel:lap:5", serial: "5", principals: ["rtunnel-grant:a"] }), undefined],
  ];
  for (const [what, cert, logLine] of refused) {
    const res = await jumpWith(r, "lap", cert, a.port);
    t.is(res.code, 255, what);
    t.regex(res.stderr, DENIED, what);
    t.notRegex(res.stdout, /SSH-2\.0/, what);
    if (logLine) t.regex((await docker(["logs", r.container])).stderr, logLine, what);
  }

  // The audit: each login and each refusal with its key id and serial ("key" null: no registry key).
  const rows = certRows(await r.adminJson<AuditEvent[]>(["audit"]));
  const lapFp = await c.fingerprint("/k/lap.pub");
  for (const e of rows) t.like(e, { account: "jump", fingerprint: lapFp, key: null });
  t.true(rows.some((e) => !e.refused && e.keyId === "rtunnel:lap:1" && e.serial === "1" && e.ca === set.userCa[0] && JSON.stringify(e.devices) === '["a"]'), "the first login");
  t.true(rows.some((e) => !e.refused && e.keyId === "rtunnel:lap:2" && JSON.stringify(e.devices) === '["a","b"]'), "the grant of both");
  for (const serial of ["3", "4", "5"]) t.true(rows.some((e) => e.refused === "certificate" && e.serial === serial && e.keyId === `rtunnel:lap:${serial}`), `refusal of serial ${serial}`);
  t.true(rows.some((e) => e.refused === "certificate" && e.serial === "1" && e.ca === set.userCa[0]), "the login before any CA was set");
});

test("[docker] revoking a certificate (set-krl) refuses it and ends its live login, not others; list shows certificate logins; a relay replaced on its volume keeps the CA and the KRL", async (t) => {
  t.timeout(20 * 60_000);
  const scope = useScope(t);
  const r = await startRelay(scope);
  const c = certificates(r);
  const a = await r.adminJson<{ port: number }>(["add-device", "a"], await r.key("deva"));
  await r.tunnel("deva", a.port);
  const ca = await c.ca("userca");
  await r.adminJson(["set-user-ca"], ca);
  const stolen = await c.sign({ ca: "userca", key: "lap", id: "rtunnel:lap:7001", serial: "7001", principals: ["rtunnel-grant:a"] });
  const fine = await c.sign({ ca: "userca", key: "desk", id: "rtunnel:desk:7002", serial: "7002", principals: ["rtunnel-grant:a"] });
  const h = holds(r);
  await h.start("stolen", "lap", "jump", ["-o", `CertificateFile=${stolen}`]);
  await h.start("fine", "desk", "jump", ["-o", `CertificateFile=${fine}`]);
  t.is(await h.settled("stolen"), "held");
  t.is(await h.settled("fine"), "held");
  const lapFp = await c.fingerprint("/k/lap.pub");
  await waitFor("the relay to count both logins", async () => (await admitted(r, lapFp)) === 1 && (await admitted(r, await c.fingerprint("/k/desk.pub"))) === 1, { tries: 480, intervalMs: 250 });
  const listed = ListWithCertificatesAnswer.parse(await r.adminJson(["list"])).filter((e) => e.kind === "certificate");
  t.deepEqual(listed.map((e) => [e.keyId, e.serial, e.holder, e.devices, e.connections]).sort(), [["rtunnel:desk:7002", "7002", "desk", ["a"], 1], ["rtunnel:lap:7001", "7001", "lap", ["a"], 1]]);

  const krl = await c.krl("userca", ["7001"]);
  const revoked = SetKrlAnswer.parse(await r.adminJson(["set-krl"], `${krl}\n`));
  t.is(revoked.sessionsEnded, true);
  t.is(revoked.krl.bytes, Buffer.from(krl, "base64").length);
  await waitFor("the revoked certificate's login to end", async () => (await h.stateOf("stolen")) === "cut", { tries: 480, intervalMs: 250 });
  t.is(await h.stateOf("fine"), "held", "the other certificate's login stays");
  t.regex((await docker(["logs", r.container])).stderr, /rtunneld-reaper: ended connection pid \d+: its certificate is revoked/);
  const again = await jumpWith(r, "lap", stolen, a.port);
  t.regex(again.stderr, DENIED, "the revoked certificate is refused");
  t.regex((await docker(["logs", r.container])).stderr, /revoked by file \/run\/rtunneld\/revoked\.krl/);

  // Restarted (docker restart: a new /run), then replaced on the same volume: the same CA and
  // KRL, the same verdicts.
  const before = CaAnswer.parse(await r.adminJson(["ca"]));
  t.like(before, { userCa: [await c.fingerprint("/k/userca.pub")], krl: revoked.krl });
  for (const how of ["restarted", "replaced"] as const) {
    if (how === "restarted") await r.fixture.restart();
    else await r.restart();
    t.deepEqual(CaAnswer.parse(await r.adminJson(["ca"])), before, how);
    t.is((await exec(r.container, ["sh", "-c", `base64 -w0 ${RELAY_CA_PATHS.runKrl}`])).stdout, krl, `${how}: the KRL sshd reads is the one set`);
    await r.tunnel("deva", a.port);
    t.regex((await jumpWith(r, "lap", stolen, a.port)).stderr, DENIED, `${how}: still revoked`);
    t.regex((await jumpWith(r, "desk", fine, a.port)).stdout, /^SSH-2\.0-/, `${how}: still trusted`);
  }
});

test("[docker] certificate logins count against the jump limit (per certified key, authenticated only); refusals are on record with the key id; remove ends the logins whose grant names the device", async (t) => {
  t.timeout(20 * 60_000);
  const scope = useScope(t);
  const r = await startRelay(scope, { settings: { limits: { jump: 2 } } });
  const c = certificates(r);
  const a = await r.adminJson<{ port: number }>(["add-device", "a"], await r.key("deva"));
  const b = await r.adminJson<{ port: number }>(["add-device", "b"], await r.key("devb"));
  await r.tunnel("deva", a.port);
  await r.tunnel("devb", b.port);
  await r.adminJson(["set-user-ca"], await c.ca("userca"));
  const cert = await c.sign({ ca: "userca", key: "lap", id: "rtunnel:lap:9", serial: "9", principals: ["rtunnel-grant:a"] });
  const lapFp = await c.fingerprint("/k/lap.pub");
  const h = holds(r);
  const states: string[] = [];
  for (let i = 0; i < 3; i++) {
    const before = await admitted(r, lapFp);
    await h.start(`lap${i}`, "lap", "jump", ["-o", `CertificateFile=${cert}`]);
    const s = await h.settled(`lap${i}`);
    if (s === "held") await waitFor(`the relay to count lap${i}`, async () => (await admitted(r, lapFp)) > before, { tries: 480, intervalMs: 250 });
    states.push(s);
  }
  t.deepEqual(states, ["held", "held", "refused"]);
  const refusal = certRows(await r.adminJson<AuditEvent[]>(["audit"])).filter((e) => e.refused === "limit");
  t.is(refusal.length, 1);
  t.like(refusal[0], { keyId: "rtunnel:lap:9", serial: "9", limit: 2, key: null });
  const row = ListWithCertificatesAnswer.parse(await r.adminJson(["list"])).find((e) => e.kind === "certificate");
  t.like(row, { keyId: "rtunnel:lap:9", connections: 2, limit: 2 });
  // Another laptop's certificate is not affected by lap's limit.
  const desk = await c.sign({ ca: "userca", key: "desk", id: "rtunnel:desk:10", serial: "10", principals: ["rtunnel-grant:b"] });
  await h.start("desk", "desk", "jump", ["-o", `CertificateFile=${desk}`]);
  t.is(await h.settled("desk"), "held");

  // Removing a: its port leaves every grant, so the logins granted a end; desk's (b) stays.
  const removed = await r.adminJson<{ sessionsEnded: boolean }>(["remove", "a"]);
  t.is(removed.sessionsEnded, true);
  await waitFor("the logins granted the removed device to end", async () => (await h.stateOf("lap0")) === "cut" && (await h.stateOf("lap1")) === "cut", { tries: 480, intervalMs: 250 });
  t.is(await h.stateOf("desk"), "held");
  t.regex((await docker(["logs", r.container])).stderr, /its certificate's grant names a removed device/);
});
