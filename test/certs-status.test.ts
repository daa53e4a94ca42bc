// Fleet certificates, the device side's decisions (provision/device/certs.ts) and `status`
// (provision/commands/status.ts): the device's clock offset from one reading, and the one
// line when it would refuse certificates; when enrollment signs a host key again (none, another
// CA, another key or name, under 30 days left); and the table and --json of `status` with a CA
// (days left on each host certificate, a warning under 14; the devices behind on the KRL),
// unchanged without one.
import test from "ava";
import fc from "fast-check";
import { BACKDATE_SECONDS } from "../lib/contract/ca.ts";
import { certificateLines, fleetStatus, renderList } from "../provision/commands/status.ts";
import { clockOffset, clockProblem, daysLeft, describeClock, hostCertDecision, parseEpochSeconds, type HostCertFacts } from "../provision/device/certs.ts";
import type { DeviceListing } from "../provision/relay/protocol.ts";

const NOW = new Date("2026-12-08T00:00:00Z");
const DAY = 86_400_000;

test("the clock offset is the device's second against the middle of the round trip, with half of it (and the truncated second) as its uncertainty", (t) => {
  const sent = NOW.getTime();
  t.deepEqual(clockOffset({ sentMs: sent, deviceSeconds: sent / 1000, receivedMs: sent + 200 }), { offsetSeconds: 0.4, uncertaintySeconds: 0.6 });
  t.deepEqual(clockOffset({ sentMs: sent, deviceSeconds: sent / 1000 - 3600, receivedMs: sent + 1000 }), { offsetSeconds: -3600, uncertaintySeconds: 1 });
  t.throws(() => clockOffset({ sentMs: sent, deviceSeconds: Number.NaN, receivedMs: sent }), { instanceOf: RangeError });
  t.throws(() => clockOffset({ sentMs: sent, deviceSeconds: 1, receivedMs: sent - 1 }), { instanceOf: RangeError });
  t.is(parseEpochSeconds("1796690776\n"), 1796690776);
  for (const bad of ["", "-5", "12.5", "Tue Dec  8", "1796690776 1"]) t.is(parseEpochSeconds(bad), undefined, bad);
  t.deepEqual(clockOffset({ sentMs: sent, deviceSeconds: sent / 1000 + 60, receivedMs: sent + 2675 }).uncertaintySeconds, 1.9, "rounded up: 1.8375 s is not bounded by 1.8");
  // Property: whatever the round trip, the true offset lies within offset ± uncertainty, give or
  // take the offset's own rounding to a tenth (fast-check once found the nearest-rounded bound
  // 0.0375 s short: a reading at the end of a 2675 ms round trip).
  fc.assert(
    fc.property(fc.integer({ min: -100_000, max: 100_000 }), fc.integer({ min: 0, max: 5000 }), fc.double({ min: 0, max: 1, noNaN: true }), (trueOffsetMs, rttMs, when) => {
      const deviceAtMs = sent + rttMs * when + trueOffsetMs;
      const o = clockOffset({ sentMs: sent, deviceSeconds: Math.floor(deviceAtMs / 1000), receivedMs: sent + rttMs });
      return Math.abs(o.offsetSeconds - trueOffsetMs / 1000) <= o.uncertaintySeconds + 0.05 + 1e-9;
    }),
    { numRuns: 500, examples: [[57325, 2675, 0.9999999543662383], [57325, 2675, 1]] },
  );
});

test("a clock further off than the backdating (less the uncertainty) gets one line: behind, certificates not yet valid; ahead, they end early", (t) => {
  t.is(clockProblem({ offsetSeconds: -2, uncertaintySeconds: 0.5 }), undefined);
  t.is(clockProblem({ offsetSeconds: -(BACKDATE_SECONDS + 10), uncertaintySeconds: 20 }), undefined, "within the uncertainty: not called wrong");
  t.is(clockProblem({ offsetSeconds: -3600, uncertaintySeconds: 0.6 }), "the device's clock is 3600 s behind: certificates issued now are not yet valid there; fix its clock (timedatectl / NTP)");
  t.regex(clockProblem({ offsetSeconds: 7200.4, uncertaintySeconds: 0.6 }) ?? "", /^the device's clock is 7200 s ahead: certificates expire 7200 s early there .*; fix its clock \(timedatectl \/ NTP\)$/);
  t.is(describeClock({ offsetSeconds: -3600, uncertaintySeconds: 0.6 }), "device clock: 3600.0 s behind this machine (±0.6 s; certificates are backdated 5 min)");
  t.is(describeClock({ offsetSeconds: 0, uncertaintySeconds: 0.5 }), "device clock: in step with this machine (±0.5 s; certificates are backdated 5 min)");
});

const KEY_FP = `SHA256:${"k".repeat(43)}`;
const CA_FP = `SHA256:${"c".repeat(43)}`;
const cert = (o: Partial<HostCertFacts> = {}): HostCertFacts => ({
  kind: "host", keyFingerprint: KEY_FP, caFingerprint: CA_FP, principals: ["rtunnel-raspi"], serial: "42",
  validAfter: new Date(NOW.getTime() - DAY), validBefore: new Date(NOW.getTime() + 89 * DAY), ...o,
});

test("the host key is signed again when the device has no certificate of ours for this key and name, or under 30 days are left; else kept", (t) => {
  const decide = (current?: HostCertFacts) => hostCertDecision({ current, hostKeyFingerprint: KEY_FP, hostCaFingerprint: CA_FP, alias: "rtunnel-raspi", now: NOW });
  t.deepEqual(decide(cert()), { sign: false, reason: "its host certificate (serial 42) has 89 days left" });
  const cases: [HostCertFacts | undefined, RegExp][] = [
    [undefined, /no host certificate yet/],
    [cert({ kind: "user" }), /user certificate/],
    [cert({ caFingerprint: `SHA256:${"o".repeat(43)}` }), /signed by another CA/],
    [cert({ keyFingerprint: `SHA256:${"n".repeat(43)}` }), /for another key .*the host key changed/],
    [cert({ principals: ["rtunnel-garage"] }), /names rtunnel-garage, not rtunnel-raspi/],
    [cert({ principals: ["rtunnel-raspi", "x"] }), /names rtunnel-raspi,x/],
    [cert({ validBefore: undefined }), /never expires/],
    [cert({ validBefore: new Date(NOW.getTime() + 29 * DAY + 1000) }), /has 29 days left \(renewed under 30\)/],
    [cert({ validBefore: new Date(NOW.getTime() + 5 * DAY) }), /has 5 days left/],
    [cert({ validBefore: new Date(NOW.getTime() - 1000) }), /has expired/],
  ];
  for (const [current, why] of cases) {
    const d = decide(current);
    t.true(d.sign, why.source);
    t.regex(d.reason, why);
  }
  t.false(decide(cert({ validBefore: new Date(NOW.getTime() + 30 * DAY + 1000) })).sign, "30 days and a second: kept");
  t.is(daysLeft(new Date(NOW.getTime() + 13.9 * DAY), NOW), 13);
});

const idle = { connectedSince: null, lastSeen: null, connections: 0, limit: 2, lastRefused: null };
const dev = (name: string, online: boolean): DeviceListing => ({ ...idle, name, kind: "device", port: 20000, fingerprint: `SHA256:${"a".repeat(43)}`, online, listening: online, banner: online ? "SSH-2.0-OpenSSH_10.0" : null });
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
const hostCert = (days: number) => ({ serial: "7", validAfter: iso(NOW.getTime() - DAY), validBefore: iso(NOW.getTime() + days * DAY + 1000) });

test("status with a CA: days left on each host certificate (a warning under 14, EXPIRED when past), the KRL version each device has and who is behind, in the table, --json and the lines after it", (t) => {
  const records = {
    raspi: { krlVersion: 3, hostCert: hostCert(80) },
    garage: { krlVersion: 2, hostCert: hostCert(9) },
    shed: { krlVersion: 3, hostCert: hostCert(-2), clock: { offsetSeconds: -3600, uncertaintySeconds: 0.4, measuredAt: iso(NOW.getTime()) } },
  };
  const s = fleetStatus([dev("raspi", true), dev("garage", false), dev("shed", true), dev("new", true)], [], { records, krlVersion: 3, now: NOW });
  t.deepEqual(s.certificates?.krlBehind, ["garage"]);
  t.deepEqual(s.certificates?.uncertified, ["new"], "a device this CA never enrolled is not behind: a push can't reach it");
  const byName = new Map(s.entries.map((e) => [e.name, e]));
  const certs = (n: string) => (byName.get(n) as { certificates?: unknown }).certificates;
  t.deepEqual(certs("raspi"), { hostCert: { serial: "7", validBefore: records.raspi.hostCert.validBefore, daysLeft: 80, state: "ok" }, krlVersion: 3, krlBehind: false, certified: true });
  t.like(certs("garage"), { hostCert: { daysLeft: 9, state: "warn" }, krlVersion: 2, krlBehind: true });
  t.like(certs("new"), { hostCert: null, krlVersion: null, krlBehind: false, certified: false });
  t.like(certs("shed"), { hostCert: { state: "expired" }, clock: { offsetSeconds: -3600 } });
  const json = JSON.parse(JSON.stringify(s.entries)) as { name: string; certificates: { krlBehind: boolean } }[];
  t.deepEqual(json.filter((e) => e.certificates.krlBehind).map((e) => e.name), ["garage"], "--json says who is behind");

  const table = renderList(s.entries, s.certificates).split("\n");
  t.regex(table[0]!, /^NAME\s+KIND\s+STATE\s+PORT\s+HOST CERT\s+KRL\s+CONNS\s/);
  t.regex(table[1]!, /^raspi\s+device\s+online\s+20000\s+80d\s+3\s+0\/2/);
  t.regex(table[2]!, /^garage\s+device\s+offline\s+20000\s+9d \(renew!\)\s+2 \(behind, newest 3\)\s/);
  t.regex(table[3]!, /^shed\s+device\s+online\s+20000\s+EXPIRED\s+3\s/);
  t.regex(table[4]!, /^new\s+device\s+online\s+20000\s+-\s+- \(no certificates\)\s/);
  const lines = certificateLines(s);
  t.true(lines.some((l) => /^warning: garage's host certificate expires in 9 days \(.*\): enroll it again to renew$/.test(l)), lines.join("\n"));
  t.true(lines.some((l) => /^warning: shed's host certificate expired on .*: laptops that trust the host CA refuse it; enroll it again to renew$/.test(l)));
  t.true(lines.some((l) => /^warning: shed: the device's clock is 3600 s behind: certificates issued now are not yet valid there; fix its clock .*; a certificate login refused there is refused for that$/.test(l)));
  t.is(lines.at(-2), "KRL behind (not version 3): garage: offline when it was pushed; `npm run revoke-cert -- --push` (or enrolling again) brings them up to date");
  t.is(lines.at(-1), "no fleet certificates (enrolled before the CA, or from another laptop): new: they take no certificate and no KRL; enroll them again from here with the CA loaded");
  t.false(lines.some((l) => l.includes("raspi")));
});

test("status without a CA: no certificate fields, columns or lines (as before)", (t) => {
  const s = fleetStatus([dev("raspi", true)], []);
  t.is(s.certificates, undefined);
  t.false("certificates" in s.entries[0]!);
  t.notRegex(renderList(s.entries, s.certificates), /HOST CERT|KRL/);
  t.is(renderList(s.entries, s.certificates), renderList(s.entries));
  t.deepEqual(certificateLines(s), []);
});

test("status lists each certificate logged in on the relay after the clients: its holder and serial, its connections against the limit, its grant", (t) => {
  const login = {
    kind: "certificate" as const, keyId: "rtunnel:alice:1234", serial: "1234", holder: "alice", keyFingerprint: KEY_FP, ca: CA_FP,
    devices: ["garage", "raspi"], online: true as const, connections: 2, connectedSince: "2026-12-08T00:00:00Z", limit: 32,
  };
  const s = fleetStatus([], [], undefined, [login]);
  t.like(s.entries, [{ kind: "certificate", name: "alice", state: "certificate", serial: "1234", connections: 2 }]);
  t.true(s.allOnline, "a certificate is not a device");
  const row = renderList(s.entries).split("\n")[1]!;
  t.regex(row, new RegExp(`^alice \\(serial 1234\\)\\s+certificate\\s+connected\\s+-\\s+2/32\\s+2026-12-08T00:00:00Z\\s+-\\s+-\\s+${KEY_FP.replace(/[+/]/g, "\\$&")}\\s+garage,raspi$`));
});
