// The fleet certificates' contract (lib/contract/ca.ts): principal names, key ids, serials,
// lifetimes and validity windows. Tables of cases, and fast-check properties for the round
// trips (a principal the kit renders is read back as the same grant; nothing else is read as one).
import test from "ava";
import fc from "fast-check";
import {
  BACKDATE_SECONDS,
  caPaths,
  certificateFileFor,
  DEVICE_CA_PATHS,
  devicePrincipal,
  devicePrincipalsFile,
  formatLifetime,
  grantPrincipal,
  HOST_CERT_LIFETIME,
  hostCertState,
  keyId,
  MAX_GRANT_DEVICES,
  parseKeyId,
  parseLifetime,
  parsePrincipal,
  parseSerial,
  RELAY_CA_PATHS,
  renderPrincipal,
  SERIAL_MAX,
  USER_CERT_LIFETIME,
  userCertPrincipals,
  validityWindow,
} from "../lib/contract/ca.ts";
import { RELAY_RUN_DIR, RELAY_STATE_PATH } from "../lib/contract/relay.ts";
import { InputError } from "../lib/input.ts";

const nameArb = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/);

test("a grant principal lists its devices sorted and once, whatever order they were given in", (t) => {
  t.is(grantPrincipal(["raspi"]), "rtunnel-grant:raspi");
  t.is(grantPrincipal(["b", "a", "b", "c-1"]), "rtunnel-grant:a+b+c-1");
  t.is(devicePrincipal("raspi"), "rtunnel-device:raspi");
  t.deepEqual(userCertPrincipals(["pi2", "pi1"]), ["rtunnel-grant:pi1+pi2", "rtunnel-device:pi1", "rtunnel-device:pi2"]);
  for (const bad of [[], [""], ["Raspi"], ["a+b"], ["a:b"], ["a,b"], ["-a"], ["x".repeat(64)], ["a\nb"]]) {
    t.throws(() => grantPrincipal(bad), { instanceOf: InputError }, JSON.stringify(bad));
  }
  t.throws(() => devicePrincipal("a b"), { instanceOf: InputError });
  const many = Array.from({ length: MAX_GRANT_DEVICES + 1 }, (_, i) => `d${i}`);
  t.throws(() => grantPrincipal(many), { instanceOf: InputError, message: /at most 255/ });
  t.is(userCertPrincipals(many.slice(1)).length, 256);
});

test("only the canonical spelling of a principal is read back", (t) => {
  t.deepEqual(parsePrincipal("rtunnel-device:raspi"), { kind: "device", device: "raspi" });
  t.deepEqual(parsePrincipal("rtunnel-grant:a+b"), { kind: "grant", devices: ["a", "b"] });
  for (const bad of [
    "rtunnel-grant:b+a", // unsorted
    "rtunnel-grant:a+a", // repeated
    "rtunnel-grant:", // empty
    "rtunnel-grant:a+", // empty name
    "rtunnel-grant:+a",
    "rtunnel-grant:a,b",
    "rtunnel-device:",
    "rtunnel-device:a+b",
    "rtunnel-device:Raspi",
    "rtunnel-device:raspi ",
    "rtunnel-device:raspi\n",
    "rtunnel-raspi", // a host certificate's principal is not a user principal
    "raspi",
    "",
  ]) {
    t.is(parsePrincipal(bad), undefined, bad);
  }
});

test("principals round trip: render(parse(x)) is x, and parse(render(grant)) is the sorted unique grant", (t) => {
  fc.assert(
    fc.property(fc.array(nameArb, { minLength: 1, maxLength: 20 }), (names) => {
      const p = grantPrincipal(names);
      const parsed = parsePrincipal(p);
      return parsed?.kind === "grant" && JSON.stringify(parsed.devices) === JSON.stringify([...new Set(names)].sort()) && renderPrincipal(parsed) === p;
    }),
  );
  fc.assert(fc.property(nameArb, (n) => renderPrincipal(parsePrincipal(devicePrincipal(n))!) === devicePrincipal(n)));
  // Any string at all: what is read back renders to exactly that string.
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.string().map((s) => `rtunnel-grant:${s}`), fc.string().map((s) => `rtunnel-device:${s}`)), (s) => {
      const p = parsePrincipal(s);
      return p === undefined || renderPrincipal(p) === s;
    }),
  );
  t.pass();
});

test("a key id is rtunnel:NAME:SERIAL and serials are 1..2^64-1 in decimal", (t) => {
  t.is(keyId("alice", 123n), "rtunnel:alice:123");
  t.deepEqual(parseKeyId("rtunnel:alice:123"), { name: "alice", serial: 123n });
  t.deepEqual(parseKeyId(`rtunnel:a:${SERIAL_MAX}`), { name: "a", serial: SERIAL_MAX });
  for (const bad of ["rtunnel:alice:0", "rtunnel:alice:01", "rtunnel:Alice:1", "rtunnel:alice", "x:alice:1", `rtunnel:a:${SERIAL_MAX + 1n}`, "rtunnel:a:1:2"]) {
    t.is(parseKeyId(bad), undefined, bad);
  }
  t.throws(() => keyId("alice", 0n), { instanceOf: InputError });
  t.throws(() => keyId("alice", SERIAL_MAX + 1n), { instanceOf: InputError });
  t.throws(() => keyId("a:b", 1n), { instanceOf: InputError });
  for (const [s, v] of [["1", 1n], ["18446744073709551615", SERIAL_MAX]] as const) t.is(parseSerial(s), v);
  for (const bad of ["0", "-1", "01", "18446744073709551616", "1e3", " 1", "0x10", ""]) t.is(parseSerial(bad), undefined, bad);
  fc.assert(
    fc.property(nameArb, fc.bigInt({ min: 1n, max: SERIAL_MAX }), (n, s) => {
      const back = parseKeyId(keyId(n, s));
      return back?.name === n && back.serial === s;
    }),
  );
});

test("lifetimes are a number and m, h or d, between 5 minutes and 90 days for user certificates", (t) => {
  const table: [string, number][] = [
    ["5m", 300],
    ["30m", 1800],
    ["8h", 28800],
    ["12h", 43200],
    ["7d", 604800],
    ["90d", 7776000],
    ["2160h", 7776000],
  ];
  for (const [text, seconds] of table) t.is(parseLifetime(text), seconds, text);
  for (const bad of ["4m", "91d", "2161h", "0m", "0h", "8", "h", "8H", "8 h", " 8h", "8h ", "1.5h", "-1h", "08h", "8s", "1w", "", "9999999d"]) {
    t.throws(() => parseLifetime(bad), { instanceOf: InputError }, bad);
  }
  t.throws(() => parseLifetime("4m"), { message: /between 5m and 90d/ });
  t.is(parseLifetime(USER_CERT_LIFETIME.grantDefault), 8 * 3600);
  t.is(parseLifetime(USER_CERT_LIFETIME.loginDefault), 12 * 3600);
  // Every value inside the bounds parses, every value outside is refused, in every unit.
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 999999 }), fc.constantFrom(["m", 60], ["h", 3600], ["d", 86400]), (n, [u, mult]) => {
      const s = n * (mult as number);
      const inside = s >= USER_CERT_LIFETIME.minSeconds && s <= USER_CERT_LIFETIME.maxSeconds;
      try {
        return parseLifetime(`${n}${u}`) === s && inside;
      } catch (e) {
        return e instanceof InputError && !inside;
      }
    }),
  );
  t.is(formatLifetime(90 * 86400), "90d");
  t.is(formatLifetime(8 * 3600), "8h");
  t.is(formatLifetime(300), "5m");
});

test("a validity window starts five minutes before issue (whole seconds) and ends the lifetime after it", (t) => {
  const now = new Date("2026-12-08T10:00:00.750Z");
  const w = validityWindow(now, 8 * 3600);
  t.is(BACKDATE_SECONDS, 300);
  t.is(w.validAfter.toISOString(), "2026-12-08T09:55:00.000Z");
  t.is(w.validBefore.toISOString(), "2026-12-08T18:00:00.000Z");
  for (const bad of [0, -1, 1.5, NaN]) t.throws(() => validityWindow(now, bad), { instanceOf: InputError });
  fc.assert(
    fc.property(fc.date({ min: new Date("2000-01-01"), max: new Date("2100-01-01"), noInvalidDate: true }), fc.integer({ min: 1, max: 90 * 86400 }), (d, life) => {
      const v = validityWindow(d, life);
      return v.validBefore.getTime() - v.validAfter.getTime() === (life + BACKDATE_SECONDS) * 1000 && v.validAfter.getTime() <= d.getTime() - BACKDATE_SECONDS * 1000 + 999 && v.validAfter.getTime() % 1000 === 0;
    }),
  );
});

test("a host certificate is renewed under 30 days left and warned about under 14", (t) => {
  const now = new Date("2026-12-08T00:00:00Z");
  const after = (days: number) => new Date(now.getTime() + days * 86400 * 1000);
  t.is(HOST_CERT_LIFETIME.seconds, 90 * 86400);
  const table: [number, ReturnType<typeof hostCertState>][] = [
    [90, "ok"],
    [30, "ok"],
    [29.99, "renew"],
    [14, "renew"],
    [13.99, "warn"],
    [0.001, "warn"],
    [0, "expired"],
    [-1, "expired"],
  ];
  for (const [days, state] of table) t.is(hostCertState(after(days), now), state, String(days));
});

test("the CA's files live under the ssh dir; devices' under /etc/ssh; the relay's on its state volume", (t) => {
  const p = caPaths("/home/op/.ssh");
  t.is(p.dir, "/home/op/.ssh/rtunnel-ca");
  t.is(p.userCa, "/home/op/.ssh/rtunnel-ca/user_ca");
  t.is(p.hostCaPub, "/home/op/.ssh/rtunnel-ca/host_ca.pub");
  t.is(p.krl, "/home/op/.ssh/rtunnel-ca/revoked.krl");
  t.is(p.devices, "/home/op/.ssh/rtunnel-ca/devices.json");
  t.is(certificateFileFor("/home/op/.ssh/id_ed25519"), "/home/op/.ssh/id_ed25519-cert.pub");
  t.is(certificateFileFor("/tmp/k/laptop.pub"), "/tmp/k/laptop-cert.pub");
  for (const f of Object.values(DEVICE_CA_PATHS)) t.true(f.startsWith("/etc/ssh/rtunnel_"), f);
  t.is(devicePrincipalsFile("pi"), "/etc/ssh/rtunnel_principals/pi");
  for (const bad of ["..", "../x", "a/b", "", "-x", "a b"]) t.throws(() => devicePrincipalsFile(bad), { instanceOf: InputError }, bad);
  t.true(RELAY_CA_PATHS.userCa.startsWith(`${RELAY_STATE_PATH}/`));
  t.true(RELAY_CA_PATHS.krl.startsWith(`${RELAY_STATE_PATH}/`));
  t.true(RELAY_CA_PATHS.runKrl.startsWith(`${RELAY_RUN_DIR}/`));
});
