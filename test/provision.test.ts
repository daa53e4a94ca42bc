// The validators of what a person gives the CLI (provision/validate.ts) and the key parser
// they lean on (lib/keys.ts): tables of cases. The laptop model's renderers, with hostile
// generators, are in laptop-model.test.ts.
import test from "ava";
import { InputError } from "../lib/input.ts";
import { parsePublicKey } from "../lib/keys.ts";
import { configPath, parseHostKeyPin, validateHost, validateName, validatePort, validateUser } from "../provision/validate.ts";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2cck8EOaHbiWbCBdjzWCjhONoEIKmWbfJB/kHOsUrH x";
const KEY_FP = "SHA256:7w8nD9AKPyolbzE5W5GYiBtMYbLNtWg7mT2pTYA/GmM";

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

