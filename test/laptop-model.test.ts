// The laptop model (provision/laptop/model.ts): the fragment and known_hosts rendered, read
// back through the ssh-config parser, and changed by the commands. Tables of cases, and
// fast-check properties with hostile generators: whatever a name, host, port, user or path
// contains, it is refused or rendered into lines the parser reads back as exactly the
// directives we meant; and what one command wrote survives the others.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test from "ava";
import fc from "fast-check";
import SSHConfig, { LineType } from "ssh-config";
import { InputError } from "../lib/input.ts";
import { parsePublicKey } from "../lib/keys.ts";
import { run } from "../lib/proc.ts";
import { entries, hostPattern, parseKnownHosts, renderKnownHosts, upsertKnownHost } from "../lib/knownHosts.ts";
import {
  deviceHostCa,
  emptyModel,
  ensureInclude,
  HEADER,
  pinnedDeviceKey,
  readModel,
  RELAY_ALIAS,
  renderFragment,
  renderKnown,
  renderLaptopFiles,
  withDevice,
  withCertificateFile,
  withoutDevice,
  withRelay,
  type LaptopModel,
} from "../provision/laptop/model.ts";
import { configPath } from "../provision/validate.ts";

const KEY = parsePublicKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2cck8EOaHbiWbCBdjzWCjhONoEIKmWbfJB/kHOsUrH x");
const KEY2 = parsePublicKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSuiFL6Z+W79a9yoZoxkDyzGQnCCeTY2iTi/M6ttWZk y");
const paths = { identityFile: "~/.ssh/id_ed25519", knownHostsFile: "~/.ssh/known_hosts.rtunnel" };
const relay = { host: "203.0.113.7", port: 12345, hostKey: KEY };

// Pieces that change an ssh_config line's meaning when they get in.
const hostile = fc.oneof(
  fc.string(),
  fc.string({ unit: "grapheme" }),
  fc.constantFrom(
    "\n", "\r", "\r\n", "\u2028", "\u0085", '"', "'", "\\", " ", "\t", "#", "=", "%", "$", "${HOME}", "*", "?", "[", "]",
    "Match exec \"touch /tmp/pwned\"", "Include /tmp/evil", "ProxyCommand sh -c id", "-oProxyCommand=id", "command=\"id\" ",
    "no-pty,", "raspi", "rtunnel-relay", "é", "\u0000", "..", "/", "~",
  ),
);
const hostileString = fc.array(hostile, { maxLength: 6 }).map((parts) => parts.join(""));
const around = (core: fc.Arbitrary<string>) =>
  fc.tuple(hostileString, core, hostileString, fc.boolean(), fc.boolean()).map(([a, c, b, pre, post]) => `${pre ? a : ""}${c}${post ? b : ""}`);

interface Spec {
  relay: { host: string; port: number };
  identityFile: string;
  knownHostsFile: string;
  devices: { name: string; port: number; user: string }[];
}

function model(c: Spec): LaptopModel {
  let m = withRelay(emptyModel({ identityFile: c.identityFile, knownHostsFile: c.knownHostsFile }), { ...c.relay, hostKey: KEY });
  for (const d of c.devices) m = withDevice(m, { ...d, hostKey: KEY });
  return m;
}

const base: Spec = { relay: { host: "203.0.113.7", port: 12345 }, ...paths, devices: [{ name: "raspi", port: 20000, user: "pi" }] };

/** Directives of a rendered file as [host, param, value] triples, comments dropped. */
function directives(text: string): [string, string, string][] {
  const out: [string, string, string][] = [];
  const walk = (config: SSHConfig, host: string) => {
    for (const line of config) {
      if (line.type !== LineType.DIRECTIVE) continue;
      const value = typeof line.value === "string" ? line.value : line.value.map((v) => v.val).join(" ");
      out.push([host, line.param, value]);
      if ("config" in line) walk(line.config, value);
    }
  };
  walk(SSHConfig.parse(text), "");
  return out;
}

function expected(c: Spec): [string, string, string][] {
  const out: [string, string, string][] = [
    ["", "Host", RELAY_ALIAS],
    [RELAY_ALIAS, "HostName", c.relay.host],
    [RELAY_ALIAS, "Port", String(c.relay.port)],
    [RELAY_ALIAS, "User", "jump"],
    [RELAY_ALIAS, "IdentityFile", c.identityFile],
    [RELAY_ALIAS, "IdentitiesOnly", "yes"],
    [RELAY_ALIAS, "UserKnownHostsFile", c.knownHostsFile],
    [RELAY_ALIAS, "StrictHostKeyChecking", "yes"],
  ];
  for (const d of [...c.devices].sort((a, b) => a.name.localeCompare(b.name))) {
    out.push(
      ["", "Host", d.name],
      [d.name, "HostName", "127.0.0.1"],
      [d.name, "Port", String(d.port)],
      [d.name, "User", d.user],
      [d.name, "ProxyJump", RELAY_ALIAS],
      [d.name, "HostKeyAlias", `rtunnel-${d.name}`],
      [d.name, "IdentityFile", c.identityFile],
      [d.name, "IdentitiesOnly", "yes"],
      [d.name, "UserKnownHostsFile", c.knownHostsFile],
      [d.name, "StrictHostKeyChecking", "yes"],
    );
  }
  return out;
}

const devicesOf = (m: LaptopModel) => [...m.devices.values()].map(({ name, port, user }) => ({ name, port, user }));

test("the rendered fragment has a relay hop and one pinned Host block per device, and reads back the same", (t) => {
  const m = model(base);
  const text = renderFragment(m);
  t.true(text.startsWith(HEADER[0]!));
  t.deepEqual(directives(text), expected(base));
  const resolved = SSHConfig.parse(text).compute("raspi");
  t.is(resolved.ProxyJump, RELAY_ALIAS);
  t.is(resolved.HostKeyAlias, "rtunnel-raspi");
  const back = readModel(text, renderKnown(m), paths);
  t.deepEqual(devicesOf(back), base.devices);
  t.is(renderFragment(back), text);
  t.is(renderKnown(back), renderKnown(m));
  t.is(pinnedDeviceKey(back, "raspi")?.base64, KEY.base64);
});

test("a second device adds a block; the same device again changes nothing; removing one keeps the other and its pin", (t) => {
  const one = model(base);
  t.is(renderFragment(withDevice(one, { name: "raspi", port: 20000, user: "pi", hostKey: KEY })), renderFragment(one));
  const two = withDevice(one, { name: "garage", port: 20001, user: "pi", hostKey: KEY2 });
  t.deepEqual(devicesOf(readModel(renderFragment(two), "", paths)).map((d) => d.name).sort(), ["garage", "raspi"]);
  t.true(renderFragment(two).includes(renderFragment(one).split("\n\n")[2]!), "the raspi block is unchanged");
  const back = withoutDevice(two, "raspi");
  t.deepEqual(devicesOf(back).map((d) => d.name), ["garage"]);
  t.is(pinnedDeviceKey(back, "raspi"), undefined);
  t.is(pinnedDeviceKey(back, "garage")?.base64, KEY2.base64);
  t.regex(renderKnown(back), new RegExp(`^\\[203\\.0\\.113\\.7\\]:12345 ssh-ed25519 ${KEY.base64.replace(/[+/]/g, "\\$&")}$`, "m"), "the relay's pin stays");
});

test("an option one command wrote survives the others: a device's and the hop's extra directives are kept through enroll and revoke", (t) => {
  const written = renderFragment(model({ ...base, devices: [...base.devices, { name: "garage", port: 20001, user: "pi" }] }))
    .replace("Host raspi\n", "Host raspi\n  ForwardAgent no\n  SetEnv LANG=C\n")
    .replace(`Host ${RELAY_ALIAS}\n`, `Host ${RELAY_ALIAS}\n  ServerAliveInterval 15\n`);
  const m = readModel(written, "", paths);
  t.deepEqual(m.devices.get("raspi")?.extra, [["ForwardAgent", "no"], ["SetEnv", "LANG=C"]]);
  const enrolledAgain = renderFragment(withDevice(withRelay(m, relay), { name: "raspi", port: 20005, user: "pi", hostKey: KEY }));
  t.regex(enrolledAgain, /Host raspi\n(?: {2}.*\n)* {2}ForwardAgent no\n {2}SetEnv LANG=C\n/);
  t.regex(enrolledAgain, /Host rtunnel-relay\n(?: {2}.*\n)* {2}ServerAliveInterval 15\n/);
  t.regex(enrolledAgain, /Port 20005/);
  const revoked = renderFragment(withoutDevice(m, "garage"));
  t.regex(revoked, /SetEnv LANG=C/);
  t.regex(revoked, /ServerAliveInterval 15/);
  t.notRegex(revoked, /Host garage/);
});

test("multiplexing: the hop gets ControlMaster auto with a %C path; --no-multiplex renders ControlMaster no, and later renders keep it", (t) => {
  const on = renderFragment(withRelay(model(base), relay, { multiplex: "on", controlPath: "~/.ssh/rtunnel-%C" }));
  t.deepEqual(directives(on).filter(([h, p]) => h === RELAY_ALIAS && p.startsWith("Control")), [
    [RELAY_ALIAS, "ControlMaster", "auto"], [RELAY_ALIAS, "ControlPath", "~/.ssh/rtunnel-%C"], [RELAY_ALIAS, "ControlPersist", "10m"],
  ]);
  t.deepEqual(directives(on).filter(([h, p]) => h === "raspi" && p.startsWith("Control")), [], "device blocks ride on the hop's master");
  const off = renderFragment(withRelay(model(base), relay, { multiplex: "off" }));
  t.regex(off, /Host rtunnel-relay\n(?: {2}.*\n)* {2}ControlMaster no\n/);
  // Another command (add a device, revoke one) keeps what the fragment says.
  const read = readModel(off, "", paths);
  t.is(read.relays.get(RELAY_ALIAS)?.multiplex, "off");
  t.regex(renderFragment(withDevice(withRelay(read, relay), { name: "garage", port: 20001, user: "pi", hostKey: KEY })), /ControlMaster no/);
  t.regex(renderFragment(withRelay(readModel(on, "", paths), relay)), /ControlMaster auto/);
  t.throws(() => renderFragment(withRelay(model(base), relay, { multiplex: "on", controlPath: "/tmp/x y%C" })), { instanceOf: InputError });
});

test("another laptop's files (add-client --out): multiplexed for macOS and Linux, not for Windows", (t) => {
  const devices = [{ name: "raspi", port: 20000, user: "pi", hostKey: KEY }];
  const unix = renderLaptopFiles({ relay, devices, multiplex: true });
  const windows = renderLaptopFiles({ relay, devices, multiplex: false });
  t.regex(unix["config.d/rtunnel"], /ControlMaster auto\n {2}ControlPath ~\/\.ssh\/rtunnel-%C\n/);
  t.notRegex(windows["config.d/rtunnel"], /Control/);
  t.regex(unix.config, /^# Added by rtunnel.*\nInclude ~\/\.ssh\/config\.d\/rtunnel\n$/);
  t.is(entries(parseKnownHosts(unix["known_hosts.rtunnel"])).length, 2);
});

test("property: hostile device names, users, ports and hosts are refused or render to exactly the intended directives", (t) => {
  let rendered = 0;
  fc.assert(
    fc.property(
      fc.oneof(around(fc.constantFrom("raspi", "pi-4")), fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/)),
      fc.oneof(around(fc.constant("pi")), fc.constant("pi")),
      fc.oneof(fc.integer({ min: -5, max: 70000 }), fc.constant(20000)),
      fc.oneof(around(fc.constantFrom("relay.example.com", "10.1.2.3")), fc.constant("2001:db8::1")),
      (name, user, port, host) => {
        const c: Spec = { ...base, relay: { host, port: 12345 }, devices: [{ name, port, user }] };
        let text: string;
        try {
          text = renderFragment(model(c));
        } catch (e) {
          if (!(e instanceof InputError)) throw e;
          return true;
        }
        t.deepEqual(directives(text), expected(c));
        t.deepEqual(devicesOf(readModel(text, "", paths)), c.devices);
        rendered++;
        return true;
      },
    ),
    { numRuns: 2000 },
  );
  t.true(rendered > 0, "no generated case was rendered: the property checked nothing");
  t.log(`${rendered} of 2000 cases rendered, the rest refused`);
});

test("property: hostile paths are refused or render to one quoted-as-needed value", (t) => {
  let rendered = 0;
  fc.assert(
    fc.property(around(fc.constantFrom("/home/pi/.ssh/id", "/srv/My Keys/id", "C:\\Users\\Jo Doe\\.ssh\\id", "/tmp/a#b")), fc.boolean(), (p, windows) => {
      let identityFile: string;
      try {
        identityFile = configPath(p, windows ? "C:\\Users\\Jo Doe" : "/home/pi", windows);
      } catch (e) {
        if (!(e instanceof InputError)) throw e;
        return true;
      }
      const c: Spec = { ...base, identityFile };
      t.deepEqual(directives(renderFragment(model(c))), expected(c));
      const inc = ensureInclude("Host x\n  User y\n", identityFile).text;
      t.deepEqual(directives(inc), [["", "Include", identityFile], ["", "Host", "x"], ["x", "User", "y"]]);
      rendered++;
      return true;
    }),
    { numRuns: 2000 },
  );
  t.true(rendered > 0, "no generated path was rendered: the property checked nothing");
  t.log(`${rendered} of 2000 cases rendered, the rest refused`);
});

test("known_hosts: the relay under [host]:port, devices under their HostKeyAlias, replaced not duplicated; lines of others kept", (t) => {
  t.is(hostPattern("203.0.113.7", 12345), "[203.0.113.7]:12345");
  t.is(hostPattern("relay.example.com", 22), "relay.example.com");
  const foreign = [
    "# my notes",
    "@cert-authority *.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSuiFL6Z+W79a9yoZoxkDyzGQnCCeTY2iTi/M6ttWZk",
    "|1|abc=|def= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSuiFL6Z+W79a9yoZoxkDyzGQnCCeTY2iTi/M6ttWZk",
    "@revoked rtunnel-old ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSuiFL6Z+W79a9yoZoxkDyzGQnCCeTY2iTi/M6ttWZk",
  ];
  let lines = parseKnownHosts(`${foreign.join("\n")}\n`);
  lines = upsertKnownHost(lines, { pattern: "[203.0.113.7]:12345", key: KEY });
  lines = upsertKnownHost(lines, { pattern: "rtunnel-raspi", key: KEY });
  lines = upsertKnownHost(lines, { pattern: "rtunnel-raspi", key: KEY2 });
  const text = renderKnownHosts(lines);
  for (const f of foreign) t.true(text.includes(`${f}\n`), `kept: ${f}`);
  t.is(text.split("\n").filter((l) => l.startsWith("rtunnel-raspi ")).length, 1);
  t.true(text.includes(`rtunnel-raspi ssh-ed25519 ${KEY2.base64}\n`));
  t.is(renderKnownHosts(parseKnownHosts(text)), text, "read back, rendered again: the same bytes");
  // A model read from it keeps the marker lines through a revoke.
  const m = readModel(renderFragment(model(base)), text, paths);
  t.true(renderKnown(withoutDevice(m, "raspi")).includes(`${foreign[1]}\n`));
  let rendered = 0;
  fc.assert(
    fc.property(around(fc.constantFrom("rtunnel-raspi", "[10.0.0.1]:2222")), (pattern) => {
      let out: string;
      try {
        out = renderKnownHosts([{ entry: { pattern, key: KEY } }]);
      } catch (e) {
        if (!(e instanceof InputError)) throw e;
        return true;
      }
      t.deepEqual(entries(parseKnownHosts(out)), [{ pattern, key: { type: KEY.type, base64: KEY.base64 } }]);
      t.is(out.split("\n").length, 2);
      rendered++;
      return true;
    }),
    { numRuns: 1000 },
  );
  t.true(rendered > 0, "no generated entry was rendered: the property checked nothing");
});

test("the Include goes on top, before any Host or Match line, and the rest is kept byte for byte", (t) => {
  const user = "Host work\r\n  User me\r\n\r\n# mine\r\nMatch host *.lan\r\n  ForwardAgent no\r\n";
  const { text, changed } = ensureInclude(user, "~/.ssh/config.d/rtunnel");
  t.true(changed);
  t.true(text.endsWith(user));
  t.true(text.startsWith("# Added by rtunnel"));
  t.true(text.includes("\r\nInclude ~/.ssh/config.d/rtunnel\r\n"));
  t.deepEqual(ensureInclude(text, "~/.ssh/config.d/rtunnel"), { text, changed: false });
  // An Include scoped to a Host doesn't count: ours must be global.
  const scoped = "Host a\n  Include ~/.ssh/config.d/rtunnel\n";
  t.true(ensureInclude(scoped, "~/.ssh/config.d/rtunnel").changed);
  // A BOM stays first.
  t.true(ensureInclude("\uFEFFHost a\n", "x").text.startsWith("\uFEFF# Added"));
  t.deepEqual(ensureInclude(undefined, "~/.ssh/config.d/rtunnel").text.split("\n").slice(1), ["Include ~/.ssh/config.d/rtunnel", ""]);
});

test("property: whatever the user's config holds, it is kept byte for byte after our two lines, and a second pass is a no-op", (t) => {
  let checked = 0;
  fc.assert(
    fc.property(hostileString, fc.constantFrom("~/.ssh/config.d/rtunnel", "\"/srv/My Dir/config.d/rtunnel\""), (user, inc) => {
      const includePath = inc.replace(/"/g, "");
      const { text } = ensureInclude(user, includePath);
      const bom = user.startsWith("\uFEFF") ? 1 : 0;
      if (user) {
        t.is(text.slice(text.length - user.length + bom), user.slice(bom));
        checked++;
      }
      t.false(ensureInclude(text, includePath).changed);
      return true;
    }),
    { numRuns: 1000 },
  );
  t.true(checked > 0, "no generated config was non-empty: the byte-for-byte check never ran");
});

// --- fleet certificates (issue 15) -----------------------------------------------------------

const HOST_CA = parsePublicKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKzfJdLJJlCyrD+3KIAkuMr0ixSRmZ+oujGevf0punAa host-ca");
const caLine = (device: string) => `@cert-authority rtunnel-${device} ssh-ed25519 ${HOST_CA.base64}`;

test("without certificates the laptop files are byte for byte what they were before (fleet without a CA)", (t) => {
  const m = withDevice(model(base), { name: "garage", port: 20001, user: "pi", hostKey: KEY2 });
  t.is(
    renderKnown(m),
    [
      "# Written by rtunnel: the relay's and the enrolled devices' host keys (pinned).",
      `[203.0.113.7]:12345 ssh-ed25519 ${KEY.base64}`,
      `rtunnel-raspi ssh-ed25519 ${KEY.base64}`,
      `rtunnel-garage ssh-ed25519 ${KEY2.base64}`,
      "",
    ].join("\n"),
  );
  const raspi = renderFragment(m).split("\n\n").find((b) => b.includes("Host raspi\n"))?.trimEnd();
  t.is(
    raspi,
    [
      "# Device raspi: its own sshd, reached through its reverse tunnel on the relay.",
      "Host raspi",
      "  HostName 127.0.0.1",
      "  Port 20000",
      "  User pi",
      "  ProxyJump rtunnel-relay",
      "  HostKeyAlias rtunnel-raspi",
      "  IdentityFile ~/.ssh/id_ed25519",
      "  IdentitiesOnly yes",
      "  UserKnownHostsFile ~/.ssh/known_hosts.rtunnel",
      "  StrictHostKeyChecking yes",
    ].join("\n"),
  );
  t.notRegex(renderFragment(m), /CertificateFile/);
});

test("a device with a host certificate: one @cert-authority line for its exact HostKeyAlias replaces its plain pin, in its place; the other devices keep theirs", (t) => {
  const two = withDevice(model(base), { name: "garage", port: 20001, user: "pi", hostKey: KEY2 });
  const certified = withDevice(two, { name: "raspi", port: 20000, user: "pi", hostCa: HOST_CA });
  const known = renderKnown(certified);
  t.deepEqual(known.split("\n").slice(1), [`[203.0.113.7]:12345 ssh-ed25519 ${KEY.base64}`, caLine("raspi"), `rtunnel-garage ssh-ed25519 ${KEY2.base64}`, ""]);
  t.notRegex(known, /\*/, "no wildcard: a CA line never vouches for a name the kit does not own");
  t.is(pinnedDeviceKey(certified, "raspi"), undefined);
  t.is(deviceHostCa(certified, "raspi")?.base64, HOST_CA.base64);
  t.is(deviceHostCa(certified, "garage"), undefined);
  t.is(renderFragment(certified), renderFragment(two), "the Host blocks do not change: HostKeyAlias names the CA line too");
  // Read back and enrolled again, nothing moves; a second device certified gets its own line.
  const back = readModel(renderFragment(certified), known, paths);
  t.is(renderKnown(withDevice(back, { name: "raspi", port: 20000, user: "pi", hostCa: HOST_CA })), known);
  const both = withDevice(back, { name: "garage", port: 20001, user: "pi", hostCa: HOST_CA });
  t.deepEqual(renderKnown(both).split("\n").slice(2, 4), [caLine("raspi"), caLine("garage")]);
  // A certificate that goes (the CA removed): the plain pin comes back in the CA line's place.
  t.is(renderKnown(withDevice(certified, { name: "raspi", port: 20000, user: "pi", hostKey: KEY })), renderKnown(two));
  // Revoked: both kinds of line go, the others' stay.
  const revoked = renderKnown(withoutDevice(both, "raspi"));
  t.notRegex(revoked, /rtunnel-raspi/);
  t.regex(revoked, new RegExp(`^${caLine("garage").replace(/[+/]/g, "\\$&")}$`, "m"));
});

test("a hand-written @cert-authority line for another pattern (a wildcard of the user's) is kept and never taken for ours", (t) => {
  const mine = `@cert-authority *.example.com ssh-ed25519 ${KEY2.base64}`;
  const m = readModel(renderFragment(model(base)), `${mine}\n${renderKnown(model(base))}`, paths);
  const certified = withDevice(m, { name: "raspi", port: 20000, user: "pi", hostCa: HOST_CA });
  t.true(renderKnown(certified).includes(`${mine}\n`));
  t.true(renderKnown(withoutDevice(certified, "raspi")).includes(`${mine}\n`));
  t.is(deviceHostCa(m, "raspi"), undefined);
});

test("a user certificate: CertificateFile after IdentityFile on both hops, with IdentitiesOnly yes; read back, kept by other commands, removed when unset", (t) => {
  const m = withCertificateFile(model(base), "~/.ssh/id_ed25519-cert.pub");
  const text = renderFragment(m);
  for (const host of [RELAY_ALIAS, "raspi"]) {
    const own = directives(text).filter(([h]) => h === host).map(([, p, v]) => `${p} ${v}`);
    const at = own.indexOf("IdentityFile ~/.ssh/id_ed25519");
    t.deepEqual(own.slice(at, at + 3), ["IdentityFile ~/.ssh/id_ed25519", "CertificateFile ~/.ssh/id_ed25519-cert.pub", "IdentitiesOnly yes"], host);
  }
  const back = readModel(text, renderKnown(m), paths);
  t.is(back.certificateFile, "~/.ssh/id_ed25519-cert.pub");
  t.deepEqual(back.devices.get("raspi")?.extra, [], "not kept twice as an extra option");
  t.is(renderFragment(withDevice(withRelay(back, relay), { name: "garage", port: 20001, user: "pi", hostKey: KEY2 })).match(/CertificateFile/g)?.length, 3);
  t.is(renderFragment(withCertificateFile(back, undefined)), renderFragment(model(base)));
  t.throws(() => renderFragment(withCertificateFile(model(base), "/tmp/x\nProxyCommand id")), { instanceOf: InputError });
});

test("another laptop's files with certificates (grant --out): CA lines for the certified devices, pins for the others, CertificateFile on both hops", (t) => {
  const files = renderLaptopFiles({
    relay,
    devices: [{ name: "raspi", port: 20000, user: "pi", hostCa: HOST_CA }, { name: "garage", port: 20001, user: "pi", hostKey: KEY2 }],
    multiplex: true,
    certificateFile: "~/.ssh/id_ed25519-cert.pub",
  });
  t.true(files["known_hosts.rtunnel"].includes(`${caLine("raspi")}\n`));
  t.true(files["known_hosts.rtunnel"].includes(`rtunnel-garage ssh-ed25519 ${KEY2.base64}\n`));
  t.notRegex(files["known_hosts.rtunnel"], /^rtunnel-raspi /m);
  t.is(files["config.d/rtunnel"].match(/^ {2}CertificateFile ~\/\.ssh\/id_ed25519-cert\.pub$/gm)?.length, 3);
});

test("OpenSSH reads them as meant: ssh -G gives the device block its CertificateFile and IdentitiesOnly, ssh-keygen -F finds the CA line under the HostKeyAlias", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-model-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const m = withDevice(withCertificateFile(model(base), path.join(dir, "id-cert.pub")), { name: "raspi", port: 20000, user: "pi", hostCa: HOST_CA });
  await writeFile(path.join(dir, "config"), renderFragment({ ...m, knownHostsFile: path.join(dir, "known") }));
  await writeFile(path.join(dir, "known"), renderKnown(m));
  const g = await run("ssh", ["-G", "-F", path.join(dir, "config"), "raspi"]);
  const lines = g.stdout.split("\n");
  t.true(lines.includes(`certificatefile ${path.join(dir, "id-cert.pub")}`), g.stdout);
  t.true(lines.includes("identitiesonly yes"));
  t.true(lines.includes("hostkeyalias rtunnel-raspi"));
  const f = await run("ssh-keygen", ["-F", "rtunnel-raspi", "-f", path.join(dir, "known")], { check: false });
  t.regex(f.stdout, new RegExp(`^@cert-authority rtunnel-raspi ssh-ed25519 ${HOST_CA.base64.replace(/[+/]/g, "\\$&")}$`, "m"));
  t.is((await run("ssh-keygen", ["-F", "rtunnel-other", "-f", path.join(dir, "known")], { check: false })).stdout, "");
});
