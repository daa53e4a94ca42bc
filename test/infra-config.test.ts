// Config and CIDR decisions, tested directly: tables of cases and fast-check properties.

import test from "ava";
import { publicKeyLine } from "./infra/keys.ts";
import fc from "fast-check";
import { ipv6Groups, parseCidr } from "../infra/cidr.ts";
import {
  DEFAULT_INSTANCE_TYPE, DEFAULT_REMOTE_PORT, isBurstable, parseAdminPublicKeys, parseAllowedCidrs,
  parseInstanceType, parsePortRange, parseRelayConfig, parseRemotePort, pickAvailabilityZone,
} from "../infra/config.ts";
import { egressRules, ingressRules } from "../infra/network.ts";

const key = publicKeyLine;

test("remotePort defaults to 12345 and accepts every port but 22", (t) => {
  t.is(parseRemotePort(undefined), DEFAULT_REMOTE_PORT);
  fc.assert(fc.property(fc.integer({ min: 1, max: 65535 }).filter((p) => p !== 22), (p) => parseRemotePort(String(p)) === p));
});

test("remotePort out of range is a RangeError that names the key, the value and the fix", (t) => {
  t.throws(() => parseRemotePort("70000"), { instanceOf: RangeError, message: /^rtunnel:remotePort must be 1-65535 and not 22 \(got 70000\): .*pulumi config set rtunnel:remotePort/ });
  fc.assert(fc.property(fc.oneof(fc.integer({ min: 65536, max: 10 ** 9 }), fc.constant(0), fc.constant(22)), (p) => {
    t.throws(() => parseRemotePort(String(p)), { instanceOf: RangeError, message: new RegExp(`\\(got ${p}\\)`) });
  }));
});

test("remotePort that is not a whole number is a TypeError", (t) => {
  for (const bad of ["-1", "12.5", "ssh", "0x50", "1e3"]) {
    t.throws(() => parseRemotePort(bad), { instanceOf: TypeError, message: /^rtunnel:remotePort must be a whole number/ }, bad);
  }
});

test("instanceType accepts Graviton types only", (t) => {
  t.is(parseInstanceType(undefined), DEFAULT_INSTANCE_TYPE);
  for (const ok of ["t4g.nano", "t4g.micro", "m7g.large", "c7gn.xlarge", "r8gd.2xlarge", "a1.medium", "im4gn.large"]) t.is(parseInstanceType(ok), ok);
  for (const bad of ["t3.nano", "m5.large", "c7i.large", "t3a.micro"]) t.throws(() => parseInstanceType(bad), { instanceOf: RangeError, message: /^rtunnel:instanceType must be an arm64/ });
  t.throws(() => parseInstanceType("T4G NANO"), { instanceOf: TypeError, message: /^rtunnel:instanceType/ });
  t.true(isBurstable("t4g.nano"));
  t.false(isBurstable("m7g.medium"));
});

const CIDRS: [string, string, 4 | 6][] = [
  ["0.0.0.0/0", "0.0.0.0/0", 4],
  ["203.0.113.7/32", "203.0.113.7/32", 4],
  ["10.0.0.0/8", "10.0.0.0/8", 4],
  ["::/0", "::/0", 6],
  ["2001:db8::/32", "2001:db8::/32", 6],
  ["2001:DB8:0:0:0:0:0:0/32", "2001:db8::/32", 6],
  ["2001:db8::1/128", "2001:db8::1/128", 6],
  ["::ffff:192.0.2.0/120", "::ffff:c000:200/120", 6],
];

test("CIDRs are parsed to their canonical text and family", (t) => {
  for (const [input, cidr, family] of CIDRS) t.deepEqual(parseCidr(input), { cidr, family }, input);
});

const BAD_CIDRS: [unknown, ErrorConstructor, RegExp][] = [
  ["10.0.0.0", TypeError, /not a CIDR/],
  ["10.0.0.256/32", TypeError, /not a CIDR/],
  ["10.0.0/24", TypeError, /not a CIDR/],
  ["010.0.0.0/8", TypeError, /not a CIDR/],
  ["10.0.0.0/33", RangeError, /prefix must be 0-32/],
  ["10.0.0.1/24", RangeError, /host bits set: did you mean "10\.0\.0\.0\/24"/],
  ["2001:db8::/129", RangeError, /prefix must be 0-128/],
  ["2001:db8::1/32", RangeError, /did you mean "2001:db8::\/32"/],
  ["fe80::1%eth0/64", TypeError, /not a CIDR/],
  ["2001:db8:::/32", TypeError, /not a CIDR/],
  [" 10.0.0.0/8", TypeError, /not a CIDR/],
  [42, TypeError, /entries must be CIDR strings/],
];

test("bad CIDRs are refused with the key, the value and the fix", (t) => {
  for (const [input, type, message] of BAD_CIDRS) {
    t.throws(() => parseCidr(input), { instanceOf: type, message }, String(input));
    t.throws(() => parseCidr(input), { message: /^rtunnel:allowedCidrs/ });
  }
});

test("any IPv4 network address with its prefix round-trips; any host address is narrowed only with a hint", (t) => {
  fc.assert(fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (addr, prefix) => {
    try {
      const c = parseCidr(`${addr}/${prefix}`);
      t.is(c.family, 4);
      t.is(parseCidr(c.cidr).cidr, c.cidr);
    } catch (e) {
      t.true(e instanceof RangeError && /did you mean "([\d.]+\/\d+)"/.test((e as Error).message));
      const hint = /did you mean "([^"]+)"/.exec((e as Error).message)![1]!;
      t.is(parseCidr(hint).cidr, hint);
    }
  }), { numRuns: 200 });
});

test("any IPv6 network address round-trips through its canonical form", (t) => {
  fc.assert(fc.property(fc.ipV6(), fc.integer({ min: 0, max: 128 }), (addr, prefix) => {
    let c;
    try {
      c = parseCidr(`${addr}/${prefix}`);
    } catch (e) {
      const hint = /did you mean "([^"]+)"/.exec((e as Error).message)?.[1];
      t.truthy(hint, (e as Error).message);
      c = parseCidr(hint!);
    }
    t.is(c.family, 6);
    t.is(parseCidr(c.cidr).cidr, c.cidr);
    t.is(ipv6Groups(c.cidr.split("/")[0]!).length, 8);
  }), { numRuns: 200 });
});

test("allowedCidrs defaults to everyone, splits families, drops duplicates and refuses an empty list", (t) => {
  t.deepEqual(parseAllowedCidrs(undefined), { ipv4: ["0.0.0.0/0"], ipv6: ["::/0"] });
  t.deepEqual(parseAllowedCidrs(JSON.stringify(["203.0.113.0/24", "2001:db8::/32", "203.0.113.0/24"])), { ipv4: ["203.0.113.0/24"], ipv6: ["2001:db8::/32"] });
  t.deepEqual(parseAllowedCidrs("198.51.100.0/24, 203.0.113.9/32"), { ipv4: ["198.51.100.0/24", "203.0.113.9/32"], ipv6: [] });
  t.throws(() => parseAllowedCidrs("[]"), { instanceOf: RangeError, message: /^rtunnel:allowedCidrs is empty/ });
  t.throws(() => parseAllowedCidrs("[1.2.3.4/32"), { instanceOf: TypeError, message: /^rtunnel:allowedCidrs must be a JSON list/ });
});

test("adminPublicKeys takes a JSON list or lines, and refuses missing, private, optioned or broken keys", (t) => {
  const a = key();
  const b = key("second");
  t.deepEqual(parseAdminPublicKeys(JSON.stringify([a, b, a])), [a, b]);
  t.deepEqual(parseAdminPublicKeys(`${a}\n${b}\n`), [a, b]);
  const cases: [string | undefined, ErrorConstructor, RegExp][] = [
    [undefined, TypeError, /^rtunnel:adminPublicKeys is required .*pulumi config set --path 'rtunnel:adminPublicKeys\[0\]'/],
    ["[]", TypeError, /^rtunnel:adminPublicKeys is an empty list/],
    ["{\"k\":1}", TypeError, /^rtunnel:adminPublicKeys must be a list/],
    [JSON.stringify([42]), TypeError, /^rtunnel:adminPublicKeys\[0\] must be a public key line/],
    [JSON.stringify([`restrict ${a}`]), TypeError, /^rtunnel:adminPublicKeys\[0\] is not an OpenSSH public key line without options/],
    [JSON.stringify([a, "ssh-ed25519 AAAA"]), TypeError, /^rtunnel:adminPublicKeys\[1\] is not an OpenSSH public key line without options \(it is not a valid ssh-ed25519 key: its body does not hold/],
    [JSON.stringify([`${a} "quoted"`]), TypeError, /^rtunnel:adminPublicKeys\[0\] is not an OpenSSH/],
    ["-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----", TypeError, /is a PRIVATE key: use the \.pub file/],
    [JSON.stringify(["ssh-dss AAAAB3NzaC1kc3MAAACBAP"]), TypeError, /is not an OpenSSH public key line/],
  ];
  for (const [raw, type, message] of cases) t.throws(() => parseAdminPublicKeys(raw), { instanceOf: type, message }, String(raw));
});

test("portRange is LOW-HIGH above 1023 and never contains the relay's own port", (t) => {
  t.is(parsePortRange(undefined), "20000-29999");
  t.is(parsePortRange("30000-30999"), "30000-30999");
  t.throws(() => parsePortRange("20000:29999"), { instanceOf: TypeError, message: /^rtunnel:portRange must look like/ });
  for (const bad of ["80-90", "30000-20000", "2000-3000", "60000-70000"]) t.throws(() => parsePortRange(bad), { instanceOf: RangeError, message: /^rtunnel:portRange/ }, bad);
});

test("parseRelayConfig reads every key and names the first bad one", (t) => {
  const a = key();
  const cfg = parseRelayConfig((k) => ({ adminPublicKeys: JSON.stringify([a]), remotePort: "443" } as Record<string, string>)[k]);
  t.deepEqual(cfg, { remotePort: 443, instanceType: "t4g.nano", allowedCidrs: { ipv4: ["0.0.0.0/0"], ipv6: ["::/0"] }, adminPublicKeys: [a], portRange: "20000-29999", keyAdminArns: [] });
  t.throws(() => parseRelayConfig((k) => ({ adminPublicKeys: JSON.stringify([a]), availabilityZone: "mars" } as Record<string, string>)[k]), { message: /^rtunnel:availabilityZone/ });
});

test("the zone is the pinned one if offered, else the first offering zone by name", (t) => {
  t.is(pickAvailabilityZone(["us-east-1c", "us-east-1a"], "t4g.nano"), "us-east-1a");
  t.is(pickAvailabilityZone(["us-east-1c", "us-east-1a"], "t4g.nano", "us-east-1c"), "us-east-1c");
  t.throws(() => pickAvailabilityZone(["us-east-1a"], "t4g.nano", "us-east-1e"), { instanceOf: RangeError, message: /^rtunnel:availabilityZone is "us-east-1e", which does not offer t4g.nano/ });
  t.throws(() => pickAvailabilityZone([], "t4g.nano"), { instanceOf: RangeError, message: /^rtunnel:instanceType t4g.nano is not offered/ });
  fc.assert(fc.property(fc.uniqueArray(fc.stringMatching(/^[a-z]{2}-[a-z]+-\d[a-z]$/), { minLength: 1 }), (zones) => {
    const z = pickAvailabilityZone(zones, "t4g.nano");
    return zones.includes(z) && zones.every((o) => z <= o);
  }));
});

test("ingress is one TCP rule on the port from exactly the given networks; egress is HTTPS", (t) => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 65535 }), fc.array(fc.ipV4()), (port, v4) => {
    const rules = ingressRules(port, { ipv4: v4.map((a) => `${a}/32`), ipv6: ["::/0"] });
    t.is(rules.length, 1);
    t.like(rules[0], { protocol: "tcp", fromPort: port, toPort: port, cidrBlocks: v4.map((a) => `${a}/32`), ipv6CidrBlocks: ["::/0"] });
  }), { numRuns: 50 });
  t.deepEqual(egressRules().map((r) => [r.protocol, r.fromPort, r.toPort]), [["tcp", 443, 443]]);
});
