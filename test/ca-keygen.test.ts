// The CA's pure parts (provision/ca/): the argv of every ssh-keygen call, the KRL spec, serials,
// the reading of `ssh-keygen -L`, which certificates a revoke-cert argument means, and which
// devices are behind on the KRL. Tables of cases and fast-check properties; no program runs.
import test from "ava";
import fc from "fast-check";
import { SERIAL_MAX, userCertPrincipals, validityWindow, type IssuedCert } from "../lib/contract/ca.ts";
import { InputError } from "../lib/input.ts";
import { certStatus, parseCertListing, parseValidity } from "../provision/ca/certinfo.ts";
import { generateArgv, krlArgv, krlSpec, newSerial, serialTime, signArgv, sshTime } from "../provision/ca/keygen.ts";
import { passphraseFromText } from "../provision/ca/askpass.ts";
import { devicesBehind } from "../provision/ca/push.ts";
import { resolveTarget, revocationsFor, withRevocations } from "../provision/ca/revocation.ts";

const window = validityWindow(new Date("2026-12-08T10:00:00Z"), 8 * 3600);

test("CA keys are made by ssh-keygen without any passphrase in the argv (it comes from SSH_ASKPASS)", (t) => {
  t.deepEqual(generateArgv({ file: "/s/user_ca", algorithm: "ed25519", comment: "rtunnel-user-ca" }), ["-q", "-t", "ed25519", "-C", "rtunnel-user-ca", "-f", "/s/user_ca"]);
  t.deepEqual(generateArgv({ file: "/s/host_ca", algorithm: "rsa", comment: "rtunnel-host-ca" }), ["-q", "-t", "rsa", "-b", "4096", "-C", "rtunnel-host-ca", "-f", "/s/host_ca"]);
  for (const argv of [generateArgv({ file: "f", algorithm: "rsa", comment: "c" })]) {
    t.false(argv.includes("-N") || argv.includes("-P"), "no passphrase option");
  }
  t.throws(() => generateArgv({ file: "f", algorithm: "ed25519", comment: "a b" }), { instanceOf: InputError });
});

test("a user certificate is signed through ssh-agent with absolute validity, serial, key id and the grant's principals", (t) => {
  const argv = signArgv({ caPub: "/ca/user_ca.pub", caAlgorithm: "ed25519", keyFile: "/tmp/k.pub", name: "alice", serial: 42n, principals: userCertPrincipals(["pi2", "pi1"]), window, host: false });
  t.deepEqual(argv, [
    "-U",
    "-s",
    "/ca/user_ca.pub",
    "-I",
    "rtunnel:alice:42",
    "-n",
    "rtunnel-grant:pi1+pi2,rtunnel-device:pi1,rtunnel-device:pi2",
    "-V",
    "20261208095500Z:20261208180000Z",
    "-z",
    "42",
    "/tmp/k.pub",
  ]);
  const rsa = signArgv({ caPub: "/ca/host_ca.pub", caAlgorithm: "rsa", keyFile: "/tmp/h.pub", name: "raspi", serial: 7n, principals: ["rtunnel-raspi"], window, host: true });
  t.deepEqual(rsa.slice(0, 8), ["-U", "-s", "/ca/host_ca.pub", "-t", "rsa-sha2-512", "-I", "rtunnel:raspi:7", "-h"]);
  t.is(rsa[rsa.indexOf("-n") + 1], "rtunnel-raspi");
});

test("signing refuses principals that are not the kit's, serials out of range and empty windows", (t) => {
  const base = { caPub: "c", caAlgorithm: "ed25519" as const, keyFile: "k", name: "a", serial: 1n, window, host: false };
  for (const principals of [[], ["root"], ["rtunnel-device:a,root"], ["rtunnel-grant:b+a"], ["rtunnel-device:a b"]]) {
    t.throws(() => signArgv({ ...base, principals }), { instanceOf: InputError }, JSON.stringify(principals));
  }
  t.throws(() => signArgv({ ...base, host: true, principals: ["rtunnel-device:a"] }), { instanceOf: InputError });
  t.throws(() => signArgv({ ...base, host: true, principals: ["raspi"] }), { instanceOf: InputError });
  t.throws(() => signArgv({ ...base, principals: ["rtunnel-device:a"], serial: 0n }), { instanceOf: InputError });
  t.throws(() => signArgv({ ...base, principals: ["rtunnel-device:a"], serial: SERIAL_MAX + 1n }), { instanceOf: InputError });
  t.throws(() => signArgv({ ...base, principals: ["rtunnel-device:a"], window: { validAfter: window.validBefore, validBefore: window.validAfter } }), { instanceOf: InputError });
  // Whatever names a grant has, its principals never hold ssh-keygen's separator.
  fc.assert(
    fc.property(fc.array(fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/), { minLength: 1, maxLength: 10 }), (names) => {
      const argv = signArgv({ ...base, principals: userCertPrincipals(names) });
      const list = argv[argv.indexOf("-n") + 1]!.split(",");
      return list.length === new Set(names).size + 1;
    }),
  );
});

test("ssh-keygen times are UTC YYYYMMDDHHMMSSZ", (t) => {
  t.is(sshTime(new Date("2026-01-02T03:04:05.999Z")), "20260102030405Z");
  t.throws(() => sshTime(new Date("nope")), { instanceOf: InputError });
});

test("the KRL is rendered at a version, scoped to the user CA when it revokes anything", (t) => {
  t.deepEqual(krlArgv({ out: "/ca/.k", version: 1, caPub: "/ca/user_ca.pub" }), ["-k", "-f", "/ca/.k", "-z", "1"]);
  t.deepEqual(krlArgv({ out: "/ca/.k", version: 3, caPub: "/ca/user_ca.pub", specFile: "/ca/.s" }), ["-k", "-f", "/ca/.k", "-z", "3", "-s", "/ca/user_ca.pub", "/ca/.s"]);
  for (const v of [0, -1, 1.5]) t.throws(() => krlArgv({ out: "k", version: v, caPub: "c" }), { instanceOf: InputError });
  t.is(krlSpec([]), "");
  t.is(
    krlSpec([
      { serial: "42", keyId: "rtunnel:alice:42", name: "alice", revokedAt: "2026-12-08T10:00:00.000Z" },
      { serial: "18446744073709551615", revokedAt: "2026-12-08T10:00:00.000Z" },
    ]),
    "serial: 42\nid: rtunnel:alice:42\nserial: 18446744073709551615\n",
  );
  for (const bad of [{ serial: "0" }, { serial: "18446744073709551616" }, { serial: "1\nhash: x" }, { serial: "1", keyId: "rtunnel:a:1\nsha256: x" }, { serial: "1", keyId: "other" }]) {
    t.throws(() => krlSpec([{ ...bad, revokedAt: "x" }]), { instanceOf: InputError }, JSON.stringify(bad));
  }
});

test("serials carry the issue second in their high 32 bits and are never 0 or beyond 64 bits", (t) => {
  const now = new Date("2026-12-08T10:00:00Z");
  t.is(newSerial(now, 0), BigInt(Math.floor(now.getTime() / 1000)) << 32n);
  t.is(serialTime(newSerial(now, 0xffffffff)).toISOString(), "2026-12-08T10:00:00.000Z");
  t.throws(() => newSerial(now, 2 ** 32), { instanceOf: InputError });
  t.throws(() => newSerial(now, -1), { instanceOf: InputError });
  t.throws(() => newSerial(new Date(0), 1), { instanceOf: InputError });
  fc.assert(
    fc.property(fc.date({ min: new Date("1970-01-01T00:00:01Z"), max: new Date("2106-02-07T06:28:15Z"), noInvalidDate: true }), fc.integer({ min: 0, max: 0xffffffff }), (d, r) => {
      const s = newSerial(d, r);
      return s >= 1n && s <= SERIAL_MAX && serialTime(s).getTime() === Math.floor(d.getTime() / 1000) * 1000;
    }),
  );
});

const LISTING = `/tmp/x/key-cert.pub:
        Type: ssh-ed25519-cert-v01@openssh.com user certificate
        Public key: ED25519-CERT SHA256:BYXSuTV+UBsGfEPB9LkmI4wnKiOFATrEbe7wWhQfxLs
        Signing CA: RSA SHA256:twljSiJftsSkI9dijkg1X4ZpUUJB/FxX5AQinChT/rs (using rsa-sha2-512)
        Key ID: "rtunnel:alice:123"
        Serial: 123
        Valid: from 2026-12-08T09:55:00 to 2026-12-08T18:00:00
        Principals: 
                rtunnel-grant:a+b
                rtunnel-device:a
                rtunnel-device:b
        Critical Options: (none)
        Extensions: 
                permit-X11-forwarding
                permit-agent-forwarding
                permit-port-forwarding
                permit-pty
                permit-user-rc
`;

test("ssh-keygen -L is read back into the certificate's facts", (t) => {
  const info = parseCertListing(LISTING);
  t.like(info, {
    kind: "user",
    certType: "ssh-ed25519-cert-v01@openssh.com",
    keyFingerprint: "SHA256:BYXSuTV+UBsGfEPB9LkmI4wnKiOFATrEbe7wWhQfxLs",
    caKeyType: "RSA",
    caFingerprint: "SHA256:twljSiJftsSkI9dijkg1X4ZpUUJB/FxX5AQinChT/rs",
    signatureAlgorithm: "rsa-sha2-512",
    keyId: "rtunnel:alice:123",
    serial: "123",
  });
  t.is(info.validAfter?.toISOString(), "2026-12-08T09:55:00.000Z");
  t.is(info.validBefore?.toISOString(), "2026-12-08T18:00:00.000Z");
  t.deepEqual(info.principals, ["rtunnel-grant:a+b", "rtunnel-device:a", "rtunnel-device:b"]);
  t.deepEqual(info.criticalOptions, []);
  t.is(info.extensions.length, 5);
  const host = parseCertListing(LISTING.replace("user certificate", "host certificate").replace(/Principals: \n(?: {16}.*\n)+/, "Principals: (none)\n"));
  t.is(host.kind, "host");
  t.deepEqual(host.principals, []);
  t.deepEqual(parseValidity("forever"), {});
  t.is(parseValidity("after 2026-12-08T09:55:00").validAfter?.toISOString(), "2026-12-08T09:55:00.000Z");
  t.is(parseValidity("before 2030-01-01T00:00:00").validBefore?.toISOString(), "2030-01-01T00:00:00.000Z");
  for (const bad of ["", "always", "from x to y", "from 2026-12-08 to 2026-12-09"]) t.throws(() => parseValidity(bad), undefined, bad);
  t.throws(() => parseCertListing("g.pub:1: invalid key: invalid format"));
});

test("a certificate is valid from validAfter up to, not including, validBefore", (t) => {
  const w = { validAfter: new Date(1000_000), validBefore: new Date(2000_000) };
  t.is(certStatus(w, new Date(999_999)), "not-yet-valid");
  t.is(certStatus(w, new Date(1000_000)), "valid");
  t.is(certStatus(w, new Date(1999_999)), "valid");
  t.is(certStatus(w, new Date(2000_000)), "expired");
  t.is(certStatus({}, new Date(0)), "valid");
});

const issued = (over: Partial<IssuedCert>): IssuedCert => ({
  type: "user",
  name: "alice",
  serial: "100",
  keyId: "rtunnel:alice:100",
  principals: ["rtunnel-grant:a", "rtunnel-device:a"],
  validAfter: "2026-12-08T09:55:00.000Z",
  validBefore: "2026-12-08T18:00:00.000Z",
  keyFingerprint: "SHA256:BYXSuTV+UBsGfEPB9LkmI4wnKiOFATrEbe7wWhQfxLs",
  issuedAt: "2026-12-08T10:00:00.000Z",
  ...over,
});

test("revoke-cert's argument is a name or a serial, read against issued.jsonl", (t) => {
  const list = [issued({}), issued({ serial: "101", keyId: "rtunnel:alice:101" }), issued({ name: "123", serial: "102", keyId: "rtunnel:123:102" }), issued({ type: "host", name: "raspi", serial: "103", keyId: "rtunnel:raspi:103" })];
  t.deepEqual(resolveTarget("alice", list), { kind: "name", name: "alice" });
  t.deepEqual(resolveTarget("100", list), { kind: "serial", serial: "100" });
  t.deepEqual(resolveTarget("123", list), { kind: "name", name: "123" }); // a name of digits with certificates
  t.deepEqual(resolveTarget("999", list), { kind: "serial", serial: "999" }); // a serial this machine did not issue
  t.deepEqual(resolveTarget("bob", list), { kind: "name", name: "bob" });
  t.throws(() => resolveTarget("102", [...list, issued({ name: "102", serial: "104", keyId: "rtunnel:102:104" })]), { instanceOf: InputError, message: /both a serial and a name/ });
  for (const bad of ["", "Alice", "a b", "-1", "rtunnel:alice:100", "a\nb"]) t.throws(() => resolveTarget(bad, list), { instanceOf: InputError }, bad);
});

test("a name revokes its unexpired user certificates; a serial its certificate; a host certificate is not revoked here", (t) => {
  const now = new Date("2026-12-08T12:00:00Z");
  const list = [
    issued({}),
    issued({ serial: "101", keyId: "rtunnel:alice:101", validBefore: "2026-12-08T11:00:00.000Z" }), // expired
    issued({ name: "bob", serial: "102", keyId: "rtunnel:bob:102" }),
    issued({ type: "host", name: "raspi", serial: "103", keyId: "rtunnel:raspi:103" }),
  ];
  t.deepEqual(revocationsFor({ kind: "name", name: "alice" }, list, now), [{ serial: "100", keyId: "rtunnel:alice:100", name: "alice", revokedAt: now.toISOString() }]);
  t.deepEqual(revocationsFor({ kind: "serial", serial: "102" }, list, now), [{ serial: "102", keyId: "rtunnel:bob:102", name: "bob", revokedAt: now.toISOString() }]);
  t.deepEqual(revocationsFor({ kind: "serial", serial: "555" }, list, now), [{ serial: "555", revokedAt: now.toISOString() }]);
  t.throws(() => revocationsFor({ kind: "serial", serial: "103" }, list, now), { instanceOf: InputError, message: /host certificate of device raspi/ });
  t.throws(() => revocationsFor({ kind: "name", name: "raspi" }, list, now), { instanceOf: InputError, message: /no certificate was issued to raspi/ });
  t.throws(() => revocationsFor({ kind: "name", name: "carol" }, list, now), { instanceOf: InputError });
});

test("adding revocations bumps the version once, and again with the same serials changes nothing", (t) => {
  const r = (serial: string) => ({ serial, revokedAt: "2026-12-08T12:00:00.000Z" });
  const a = withRevocations({ version: 1, revoked: [] }, [r("1"), r("2"), r("1")]);
  t.is(a.list.version, 2);
  t.deepEqual(a.added.map((x) => x.serial), ["1", "2"]);
  const b = withRevocations(a.list, [r("2"), r("1")]);
  t.is(b.list, a.list);
  t.deepEqual(b.added, []);
  fc.assert(
    fc.property(fc.array(fc.array(fc.integer({ min: 1, max: 20 }).map(String), { maxLength: 5 }), { maxLength: 6 }), (batches) => {
      let list = { version: 1, revoked: [] as { serial: string; revokedAt: string }[] };
      for (const batch of batches) {
        const before = list.version;
        const next = withRevocations(list, batch.map(r));
        if (next.list.version !== before + (next.added.length ? 1 : 0)) return false;
        list = next.list;
      }
      return new Set(list.revoked.map((x) => x.serial)).size === list.revoked.length && list.revoked.length === new Set(batches.flat()).size;
    }),
  );
});

test("devices behind on the KRL are those whose recorded version is older or unknown", (t) => {
  t.deepEqual(devicesBehind({ a: { krlVersion: 3 }, b: { krlVersion: 2 }, c: {} }, ["c", "b", "a", "d"], 3), ["b", "c", "d"]);
  t.deepEqual(devicesBehind({ a: { krlVersion: 3 } }, ["a"], 3), []);
});

test("a passphrase file's first line is the passphrase; empty, short or control characters are refused", (t) => {
  t.is(passphraseFromText("correct horse battery\nrest", "f"), "correct horse battery");
  t.is(passphraseFromText("pass word 1\r\n", "f"), "pass word 1");
  t.throws(() => passphraseFromText("\nsecond", "f"), { instanceOf: InputError });
  t.throws(() => passphraseFromText("short", "f", { minLength: 10 }), { instanceOf: InputError, message: /at least 10/ });
  t.throws(() => passphraseFromText("a\tb c d e f g", "f"), { instanceOf: InputError });
  t.throws(() => passphraseFromText("x".repeat(1001), "f"), { instanceOf: InputError });
  // the message never holds the passphrase
  const e = t.throws(() => passphraseFromText("secret123", "f", { minLength: 10 }));
  t.false(e?.message.includes("secret123"));
});
