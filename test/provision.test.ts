// Validators and renderers of the laptop side (provision/validate.ts, provision/sshConfig.ts):
// tables of cases, and fast-check properties with hostile generators: whatever a name, host,
// port, user, key or path contains, it is either refused or rendered into lines that the
// ssh-config parser reads back as exactly the directives we meant.
import test from "ava";
import fc from "fast-check";
import SSHConfig, { LineType } from "ssh-config";
import {
  HEADER,
  RELAY_ALIAS,
  ensureInclude,
  knownHostsPattern,
  parseDevices,
  parseKnownHosts,
  renderConfig,
  renderKnownHosts,
  upsertDevice,
  upsertKnownHost,
  type LaptopConfig,
} from "../provision/sshConfig.ts";
import {
  InputError,
  configPath,
  parseHostKeyPin,
  parsePublicKey,
  validateHost,
  validateName,
  validatePort,
  validateUser,
} from "../provision/validate.ts";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2cck8EOaHbiWbCBdjzWCjhONoEIKmWbfJB/kHOsUrH x";
const KEY_FP = "SHA256:7w8nD9AKPyolbzE5W5GYiBtMYbLNtWg7mT2pTYA/GmM";

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

test("device names follow the relay's pattern and nothing else", (t) => {
  for (const ok of ["raspi", "a", "pi-4", "0", "x".repeat(63)]) t.is(validateName(ok), ok);
  for (const bad of ["", "-raspi", "Raspi", "ras pi", "raspi\n", "raspi\nMatch all", "x".repeat(64), "rasp_i", "é"]) {
    t.throws(() => validateName(bad), { instanceOf: InputError }, bad);
  }
});

test("hosts are DNS names or IP addresses; ports 1-65535; users plain account names", (t) => {
  for (const ok of ["relay.example.com", "10.0.0.1", "::1", "2001:db8::2", "raspi", "a-b.c"]) t.is(validateHost(ok), ok);
  for (const bad of ["", "-oProxyCommand=x", "a b", "a\nb", "[::1]", "host:22", "pi@host", "a..b", "a_b.com"]) {
    t.throws(() => validateHost(bad), { instanceOf: InputError }, bad);
  }
  t.is(validatePort("22"), 22);
  t.is(validatePort(65535), 65535);
  for (const bad of ["0", "65536", "22 ", "-1", "1e3", "0x16", "", 1.5]) t.throws(() => validatePort(bad), { instanceOf: InputError });
  for (const ok of ["pi", "root", "_svc", "John.Doe"]) t.is(validateUser(ok), ok);
  for (const bad of ["-pi", "pi pi", "pi\n", "", "a".repeat(33)]) t.throws(() => validateUser(bad), { instanceOf: InputError });
});

test("a public key line is parsed to type, blob and the fingerprint ssh-keygen -l prints", (t) => {
  t.deepEqual(parsePublicKey(KEY), { type: "ssh-ed25519", base64: KEY.split(" ")[1]!, fingerprint: KEY_FP });
  t.is(parseHostKeyPin(KEY_FP).fingerprint, KEY_FP);
  t.is(parseHostKeyPin(KEY).fingerprint, KEY_FP);
  for (const bad of [
    `command="id" ${KEY}`,
    `${KEY}\nssh-ed25519 AAAA`,
    KEY.replace("ssh-ed25519", "ssh-rsa"), // blob says ed25519
    "ssh-ed25519 AAAA====",
    "ssh-dss AAAAB3NzaC1kc3M=",
  ]) {
    t.throws(() => parsePublicKey(bad), { instanceOf: InputError }, bad);
  }
});

test("paths under home are written with ~/, others absolute; unsafe characters are refused", (t) => {
  t.is(configPath("/home/pi/.ssh/id_ed25519", "/home/pi"), "~/.ssh/id_ed25519");
  t.is(configPath("/srv/demo/ssh/id", "/home/pi"), "/srv/demo/ssh/id");
  t.is(configPath("/home/pi2/x", "/home/pi"), "/home/pi2/x");
  t.is(configPath("C:\\Users\\Jo Doe\\.ssh\\id_ed25519", "C:\\Users\\Jo Doe", true), "~/.ssh/id_ed25519");
  t.is(configPath("D:\\keys\\id", "C:\\Users\\jo", true), "D:/keys/id");
  for (const bad of ["/tmp/a\"b", "/tmp/%d", "/tmp/${HOME}", "/tmp/*", "/tmp/a\nb", "/tmp/a\\b", "/tmp/it's"]) {
    t.throws(() => configPath(bad, "/home/pi"), { instanceOf: InputError }, bad);
  }
});

const base: LaptopConfig = {
  relay: { host: "203.0.113.7", port: 12345 },
  identityFile: "~/.ssh/id_ed25519",
  knownHostsFile: "~/.ssh/known_hosts.rtunnel",
  devices: [{ name: "raspi", port: 20000, user: "pi" }],
};

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

function expected(c: LaptopConfig): [string, string, string][] {
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

test("the rendered config has a relay hop and one pinned Host block per device", (t) => {
  const text = renderConfig(base);
  t.true(text.startsWith(HEADER[0]!));
  t.deepEqual(directives(text), expected(base));
  const resolved = SSHConfig.parse(text).compute("raspi");
  t.is(resolved.ProxyJump, RELAY_ALIAS);
  t.is(resolved.HostKeyAlias, "rtunnel-raspi");
  t.deepEqual(parseDevices(text), base.devices);
});

test("a second device adds a block; the same device again changes nothing", (t) => {
  const one = renderConfig(base);
  const again = renderConfig({ ...base, devices: upsertDevice(parseDevices(one), { name: "raspi", port: 20000, user: "pi" }) });
  t.is(again, one);
  const two = renderConfig({ ...base, devices: upsertDevice(parseDevices(one), { name: "garage", port: 20001, user: "pi" }) });
  t.deepEqual(parseDevices(two).map((d) => d.name), ["garage", "raspi"]);
  t.true(two.includes(one.split("\n\n")[2]!), "the raspi block is unchanged");
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
        const c: LaptopConfig = { ...base, relay: { host, port: 12345 }, devices: [{ name, port, user }] };
        let text: string;
        try {
          text = renderConfig(c);
        } catch (e) {
          if (!(e instanceof InputError)) throw e;
          return true;
        }
        t.deepEqual(directives(text), expected(c));
        t.deepEqual(parseDevices(text), c.devices);
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
      const c: LaptopConfig = { ...base, identityFile };
      t.deepEqual(directives(renderConfig(c)), expected(c));
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

test("known_hosts: the relay under [host]:port, devices under their HostKeyAlias, replaced not duplicated", (t) => {
  const [type, base64] = KEY.split(" ") as [string, string];
  t.is(knownHostsPattern("203.0.113.7", 12345), "[203.0.113.7]:12345");
  t.is(knownHostsPattern("relay.example.com", 22), "relay.example.com");
  let entries = upsertKnownHost([], { pattern: "[203.0.113.7]:12345", type, base64 });
  entries = upsertKnownHost(entries, { pattern: "rtunnel-raspi", type, base64 });
  const text = renderKnownHosts(entries);
  t.deepEqual(parseKnownHosts(text), entries);
  t.is(renderKnownHosts(upsertKnownHost(parseKnownHosts(text), { pattern: "rtunnel-raspi", type, base64 })).split("\n").length, text.split("\n").length);
  let rendered = 0;
  fc.assert(
    fc.property(around(fc.constantFrom("rtunnel-raspi", "[10.0.0.1]:2222")), around(fc.constant(base64)), (pattern, b64) => {
      let out: string;
      try {
        out = renderKnownHosts([{ pattern, type, base64: b64 }]);
      } catch (e) {
        if (!(e instanceof InputError)) throw e;
        return true;
      }
      t.deepEqual(parseKnownHosts(out), [{ pattern, type, base64: b64 }]);
      t.is(out.split("\n").length, 3);
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
