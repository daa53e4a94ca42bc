// The laptop side on disk (provision/laptop.ts) in temp directories, and the CLI's surface
// (help, exit codes, one-line errors) without Docker.
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { defaultClientName } from "../provision/commands/enroll.ts";
import { ExitError } from "../provision/errors.ts";
import { applyLaptop, atomicWrite, laptopModel, laptopPaths, pinnedDeviceFingerprint, planLaptopWrites, readLaptop, type LaptopPaths } from "../provision/laptop/files.ts";
import { withDevice, withRelay } from "../provision/laptop/model.ts";
import { parseRelayFacts } from "../provision/relay/facts.ts";
import { parsePublicKey, type PublicKey } from "../lib/keys.ts";
import { runCli } from "./bed/index.ts";

const KEY = parsePublicKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2cck8EOaHbiWbCBdjzWCjhONoEIKmWbfJB/kHOsUrH x");

async function home(t: { teardown: (f: () => Promise<void>) => void }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-laptop-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Change {
  relay: { host: string; port: number; hostKey: PublicKey };
  device: { name: string; port: number; user: string; hostKey: PublicKey };
  identityFile: string;
}

const change = (h: string, name = "raspi", port = 20000): Change => ({
  relay: { host: "203.0.113.7", port: 12345, hostKey: KEY },
  device: { name, port, user: "pi", hostKey: KEY },
  identityFile: path.join(h, ".ssh", "id_ed25519"),
});

/** What enrollment writes on the laptop for one device, through the model. */
async function planLaptop(p: LaptopPaths, c: Change) {
  const state = await readLaptop(p);
  return planLaptopWrites(p, state, withDevice(withRelay(laptopModel(p, state, c.identityFile), c.relay), c.device));
}

async function enrollLaptop(h: string, c: Change) {
  const p = laptopPaths({ home: h, windows: false });
  return applyLaptop(p, await planLaptop(p, c));
}

test("a fresh home gets config, config.d/rtunnel and known_hosts.rtunnel with ~/ paths; no backup of a file that did not exist", async (t) => {
  const h = await home(t);
  const written = await enrollLaptop(h, change(h));
  t.deepEqual(written.map((f) => path.relative(h, f)).sort(), [".ssh/config", ".ssh/config.d/rtunnel", ".ssh/known_hosts.rtunnel"].map((f) => f.split("/").join(path.sep)).sort());
  t.regex(await readFile(path.join(h, ".ssh", "config"), "utf8"), /^# Added by rtunnel.*\nInclude ~\/\.ssh\/config\.d\/rtunnel\n$/);
  const fragment = await readFile(path.join(h, ".ssh", "config.d", "rtunnel"), "utf8");
  t.regex(fragment, /IdentityFile ~\/\.ssh\/id_ed25519/);
  t.regex(fragment, /UserKnownHostsFile ~\/\.ssh\/known_hosts\.rtunnel/);
  t.is(await pinnedDeviceFingerprint(laptopPaths({ home: h }), "raspi"), KEY.fingerprint);
  t.false((await readdir(path.join(h, ".ssh"))).includes("config.rtunnel-backup"));
});

test("the user's config is backed up once and kept byte for byte; the same device twice changes nothing; a second device adds a block", async (t) => {
  const h = await home(t);
  await mkdir(path.join(h, ".ssh"));
  const mine = "Host *\n  ServerAliveInterval 30\nInclude ~/.ssh/other\n";
  await writeFile(path.join(h, ".ssh", "config"), mine);
  await enrollLaptop(h, change(h));
  const after = await readFile(path.join(h, ".ssh", "config"), "utf8");
  t.true(after.endsWith(mine));
  t.is(await readFile(path.join(h, ".ssh", "config.rtunnel-backup"), "utf8"), mine);
  t.deepEqual(await enrollLaptop(h, change(h)), [], "second enrollment wrote nothing");
  await enrollLaptop(h, change(h, "garage", 20001));
  const fragment = await readFile(path.join(h, ".ssh", "config.d", "rtunnel"), "utf8");
  t.deepEqual([...fragment.matchAll(/^Host (\S+)$/gm)].map((m) => m[1]), ["rtunnel-relay", "garage", "raspi"]);
  t.is(await readFile(path.join(h, ".ssh", "config"), "utf8"), after, "the Include is added once");
  t.is(await readFile(path.join(h, ".ssh", "config.rtunnel-backup"), "utf8"), mine, "the backup keeps the original");
  t.is((await readFile(path.join(h, ".ssh", "known_hosts.rtunnel"), "utf8")).split("\n").filter((l) => l.startsWith("rtunnel-")).length, 2);
});

test("--ssh-dir outside home: absolute paths, and a path ssh_config can't hold is refused before anything is written", async (t) => {
  const h = await home(t);
  const other = path.join(h, "..", `${path.basename(h)}-elsewhere`);
  t.teardown(() => rm(other, { recursive: true, force: true }));
  const p = laptopPaths({ home: path.join(h, "nobody"), sshDir: other, windows: false });
  await applyLaptop(p, await planLaptop(p, { ...change(h), identityFile: path.join(other, "id") }));
  t.regex(await readFile(path.join(other, "config"), "utf8"), new RegExp(`Include ${other.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/config\\.d/rtunnel`));
  const bad = laptopPaths({ home: h, sshDir: path.join(h, "we%ird"), windows: false });
  await t.throwsAsync(planLaptop(bad, change(h)), { message: /can't be written into ssh_config safely/ });
  await t.throwsAsync(readdir(path.join(h, "we%ird")), { code: "ENOENT" });
});

test("pinned keys are written before the Host blocks, and the Include last", async (t) => {
  const h = await home(t);
  const p = laptopPaths({ home: h, windows: false });
  const written = await applyLaptop(p, await planLaptop(p, change(h)));
  t.deepEqual(written, [p.knownHosts, p.fragment, p.config]);
});

test("a symlinked ~/.ssh/config (a dotfile manager's) is written through to its target: the link stays a link", async (t) => {
  const h = await home(t);
  await mkdir(path.join(h, ".ssh"));
  await mkdir(path.join(h, "dotfiles"));
  const mine = "Host work\n  User me\n";
  const target = path.join(h, "dotfiles", "ssh_config");
  await writeFile(target, mine, { mode: 0o644 });
  await symlink(path.join("..", "dotfiles", "ssh_config"), path.join(h, ".ssh", "config"));
  await enrollLaptop(h, change(h));
  t.true((await lstat(path.join(h, ".ssh", "config"))).isSymbolicLink());
  const after = await readFile(target, "utf8");
  t.regex(after, /^# Added by rtunnel.*\nInclude ~\/\.ssh\/config\.d\/rtunnel\n/);
  t.true(after.endsWith(mine));
  t.is((await stat(target)).mode & 0o777, 0o644, "the target keeps its mode");
  t.is(await readFile(path.join(h, ".ssh", "config.rtunnel-backup"), "utf8"), mine);
  t.deepEqual((await readdir(path.join(h, "dotfiles"))).sort(), ["ssh_config"], "no temp file left beside the target");
  // A dangling link gets its target created.
  const dangling = path.join(h, "link");
  await symlink(path.join(h, "dotfiles", "new"), dangling);
  await atomicWrite(dangling, "x\n");
  t.true((await lstat(dangling)).isSymbolicLink());
  t.is(await readFile(path.join(h, "dotfiles", "new"), "utf8"), "x\n");
});

test("laptop files that can't be read or replaced stop enrollment's preflight with one line, and nothing is written", async (t) => {
  const h = await home(t);
  const p = laptopPaths({ home: h, windows: false });
  await mkdir(p.sshDir);
  await writeFile(path.join(p.sshDir, "config.d"), "a file, not a directory\n");
  const e = await t.throwsAsync(readLaptop(p), { instanceOf: ExitError });
  t.regex(e?.message ?? "", /^can't (read|replace) .*config\.d\/rtunnel: a part of its path is a file, not a directory: move that file away; nothing was changed$/);
  t.is(e?.code, 2);
  await rm(path.join(p.sshDir, "config.d"));
  await mkdir(p.config);
  await t.throwsAsync(readLaptop(p), { instanceOf: ExitError, message: /^can't read .*config: it is a directory: move it away; nothing was changed$/ });
  t.deepEqual((await readdir(p.sshDir)).sort(), ["config"]);
});

test("relay facts: the file's {host, port, hostKey} or Pulumi's relayHost/relayPort/relayHostKey; bad ones named", (t) => {
  const line = `${KEY.type} ${KEY.base64}`;
  t.is(parseRelayFacts({ host: "relay.example.com", port: 12345, hostKey: line }, "f").hostKey.fingerprint, KEY.fingerprint);
  t.is(parseRelayFacts({ relayHost: "203.0.113.7", relayPort: "12345", relayHostKey: line }, "pulumi").port, 12345);
  t.throws(() => parseRelayFacts({ host: "relay\nProxyCommand x", port: 1, hostKey: line }, "f"), { message: /relay host must be/ });
  t.throws(() => parseRelayFacts({ host: "r", port: 1 }, "f"), { message: /hostKey/ });
});

test("client names default to a relay-safe laptop-HOSTNAME", (t) => {
  t.is(defaultClientName("Jos-MacBook-Pro.local"), "laptop-jos-macbook-pro-local");
  t.is(defaultClientName("___"), "laptop-operator");
  t.regex(defaultClientName("x".repeat(200)), /^[a-z0-9][a-z0-9-]{0,62}$/);
});

test("the CLI: --help lists the commands and exits 0; bad input is one line and exit 2", async (t) => {
  const cli = (args: string[]) => runCli(args);
  const help = await cli(["--help"]);
  t.is(help.code, 0);
  t.regex(help.stdout, /enroll-device \[options\] <name>/);
  t.regex(help.stdout, /list\|status/);
  const enrollHelp = await cli(["enroll-device", "--help"]);
  for (const opt of ["--host", "--user", "--accept-new", "--device-host-key", "--install-docker", "--relay", "--identity", "--ssh-dir", "--json", "--dry-run", "--no-multiplex"]) {
    t.true(enrollHelp.stdout.includes(opt), opt);
  }
  const bad = await cli(["enroll-device", "Bad Name", "--host", "192.168.1.23"]);
  t.is(bad.code, 2);
  t.is(bad.stderr, 'rtunnel: device name must be 1-63 of a-z, 0-9 and -, starting with a letter or digit (got "Bad Name")\n');
  const reserved = await cli(["enroll-device", "rtunnel-relay", "--host", "192.168.1.23"]);
  t.regex(reserved.stderr, /^rtunnel: device name "rtunnel-relay" is reserved/);
  const noKey = await cli(["enroll-device", "raspi", "--host", "192.168.1.23", "--identity", path.join(os.tmpdir(), "rtunnel-no-such-key")]);
  t.is(noKey.code, 2);
  t.regex(noKey.stderr, /^rtunnel: .*rtunnel-no-such-key\.pub must be one line .*\(make a key with ssh-keygen -t ed25519, or pass --identity FILE\)\n$/);
  const h = await home(t);
  await writeFile(path.join(h, "id.pub"), `${KEY.type} ${KEY.base64}\n`);
  const noRelay = await cli(["enroll-device", "raspi", "--host", "192.168.1.23", "--identity", path.join(h, "id"), "--relay", path.join(h, "missing.json")]);
  t.is(noRelay.code, 2);
  t.regex(noRelay.stderr, /^rtunnel: can't read --relay .*missing\.json: ENOENT\n$/);
});
