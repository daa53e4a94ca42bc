// The fleet commands' pure parts: revoked devices from the relay's history, the status exit
// code, names in the audit, and the laptop side without a revoked device.
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { unconfirmedCutWarning } from "../provision/relay.ts";
import { deauthorizeScript, droppedDevices } from "../provision/clients.ts";
import { parsePublicKey, type PublicKey } from "../provision/validate.ts";
import { resolveAudit } from "../provision/audit.ts";
import { fleetStatus, revokedDevices, statusExitCode } from "../provision/list.ts";
import type { AuditEvent, RelayEntry } from "../provision/relay.ts";
import { enrollClientName, keyHeldElsewhere } from "../provision/registry.ts";
import { withoutDevice, writtenPaths } from "../provision/revoke.ts";
import { renderConfig } from "../provision/sshConfig.ts";

const FP = (c: string) => `SHA256:${c.repeat(43)}`;
const dev = (name: string, online: boolean): RelayEntry => ({ name, kind: "device", port: 20000, fingerprint: FP("a"), online, connectedSince: null, lastSeen: null });
const change = (time: string, verb: string, name: string, extra: Partial<AuditEvent> = {}): AuditEvent => ({ time, type: "change", verb, name, ...extra });

test("a device whose last registry change is a remove is revoked, until the name is added again", (t) => {
  const events = [
    change("2026-01-01T00:00:00Z", "add-device", "a", { fingerprint: FP("a") }),
    change("2026-01-01T00:00:01Z", "add-device", "b", { fingerprint: FP("b") }),
    change("2026-01-01T00:00:02Z", "remove", "a", { kind: "device", fingerprint: FP("a") }),
    change("2026-01-01T00:00:03Z", "remove", "b", { kind: "device", fingerprint: FP("b") }),
    change("2026-01-01T00:00:04Z", "add-device", "b", { fingerprint: FP("c") }),
    change("2026-01-01T00:00:05Z", "remove", "laptop", { kind: "client", fingerprint: FP("d") }),
  ];
  t.deepEqual(revokedDevices(events, [dev("b", true)]).map((r) => [r.name, r.state, r.revokedAt]), [["a", "revoked", "2026-01-01T00:00:02Z"]]);
});

test("status exits 0 only when every registered device is online; revoked ones don't count", (t) => {
  const revoked = [change("t1", "add-device", "gone"), change("t2", "remove", "gone", { kind: "device" })];
  t.is(statusExitCode(fleetStatus([dev("a", true), dev("b", true)], revoked)), 0);
  t.is(statusExitCode(fleetStatus([dev("a", true), dev("b", false)], revoked)), 7);
  t.is(statusExitCode(fleetStatus([], [])), 0);
});

test("the audit names devices and laptops, and the device a laptop could reach then", (t) => {
  const rows = resolveAudit([
    change("t1", "add-device", "raspi", { port: 20000, fingerprint: FP("a") }),
    change("t2", "add-client", "laptop", { fingerprint: FP("l"), devices: ["raspi"], all: false }),
    { time: "t3", type: "connection", account: "tunnel", fingerprint: FP("a"), key: "device:raspi:20000", pid: 5 },
    { time: "t4", type: "connection", account: "jump", fingerprint: FP("l"), key: "client:laptop", pid: 6 },
    change("t5", "remove", "raspi", { kind: "device", fingerprint: FP("a") }),
    { time: "t6", type: "connection", account: "tunnel", fingerprint: FP("a"), key: null, pid: 7 },
    { time: "t7", type: "connection", account: "jump", fingerprint: FP("l"), key: "client:laptop", pid: 8 },
  ]);
  t.deepEqual(rows.map((r) => [r.event, r.who, r.device]), [
    ["add-device", "raspi", "raspi"],
    ["add-client", "laptop", "-"],
    ["tunnel", "raspi", "raspi"],
    ["connect", "laptop", "raspi"],
    ["remove", "raspi", "-"],
    ["refused", "device raspi (removed)", "-"],
    ["connect", "laptop", "-"],
  ]);
});

test("revoking rewrites the fragment without the device's Host block and known_hosts without its key, keeping the paths it was written with", (t) => {
  const render = (devices: { name: string; port: number; user: string }[]) =>
    renderConfig({ relay: { host: "relay.example.net", port: 12345 }, identityFile: "~/.ssh/my key", knownHostsFile: "~/.ssh/known_hosts.rtunnel", devices });
  const devices = [{ name: "a", port: 20000, user: "pi" }, { name: "b", port: 20001, user: "pi" }];
  const fragment = render(devices);
  t.deepEqual(writtenPaths(fragment), { identity: "~/.ssh/my key", knownHosts: "~/.ssh/known_hosts.rtunnel" });
  const known = "# x\n[relay.example.net]:12345 ssh-ed25519 AAAA\nrtunnel-a ssh-ed25519 BBBB\nrtunnel-b ssh-ed25519 CCCC\n";
  const writes = withoutDevice(fragment, known, devices, "a", render);
  t.is(writes.length, 2);
  t.notRegex(writes[0]!.text, /Host a\n/);
  t.regex(writes[0]!.text, /Host b\n/);
  t.notRegex(writes[1]!.text, /rtunnel-a /);
  t.regex(writes[1]!.text, /rtunnel-b ssh-ed25519 CCCC/);
  t.deepEqual(withoutDevice(render([devices[1]!]), "# x\n", [devices[1]!], "a", render), [], "nothing to do: nothing written");
});

test("enrollment keeps the client name the relay already holds the operator's key under, and refuses before any change what it can't do", (t) => {
  const laptop: RelayEntry = { name: "laptop-old-hostname", kind: "client", fingerprint: FP("k"), devices: ["raspi"] };
  const registry = [dev("raspi", true), laptop, { name: "laptop-new-hostname", kind: "client", fingerprint: FP("o"), devices: [] }];
  // The hostname changed: the default name is new, the key is not.
  t.deepEqual(enrollClientName([dev("raspi", true), laptop], { fingerprint: FP("k"), wanted: "laptop-new-hostname", explicit: false }), { client: "laptop-old-hostname", entry: laptop, reused: true });
  t.deepEqual(enrollClientName([laptop], { fingerprint: FP("k"), wanted: "laptop-old-hostname", explicit: true }), { client: "laptop-old-hostname", entry: laptop, reused: false });
  t.deepEqual(enrollClientName([laptop], { fingerprint: FP("n"), wanted: "fresh", explicit: false }), { client: "fresh", entry: undefined, reused: false });
  t.throws(() => enrollClientName([laptop], { fingerprint: FP("k"), wanted: "work", explicit: true }), { message: /already registered on the relay as client laptop-old-hostname: pass --client laptop-old-hostname/ });
  t.throws(() => enrollClientName(registry, { fingerprint: FP("n"), wanted: "laptop-new-hostname", explicit: false }), { message: /client name laptop-new-hostname is already taken on the relay by another key/ });
  t.throws(() => enrollClientName(registry, { fingerprint: FP("n"), wanted: "raspi", explicit: true }), { message: /client name raspi is already taken on the relay by another device/ });
  t.throws(() => enrollClientName(registry, { fingerprint: FP("a"), wanted: "me", explicit: false }), { message: /registered on the relay as device raspi: a laptop needs a key of its own/ });
  t.is(keyHeldElsewhere(registry, FP("k"), "laptop-b")?.name, "laptop-old-hostname");
  t.is(keyHeldElsewhere(registry, FP("k"), "laptop-old-hostname"), undefined);
});

/** The deauthorize script as a device's shell runs it, with HOME in a temp dir; PATH first searches `bin` when given. */
async function runDeauthorize(shell: string, home: string, key: PublicKey, bin?: string) {
  const env = { ...process.env, HOME: home, PATH: bin ? `${bin}:${process.env.PATH ?? ""}` : (process.env.PATH ?? "") };
  return new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(shell, ["-c", deauthorizeScript(key)], { env }, (err, _out, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }));
  });
}

for (const shell of ["bash", "sh"]) {
  test(`deauthorize (${shell}): the key's line goes, the rest and the file's mode stay; a failing grep leaves the file as it was`, async (t) => {
    const home = await mkdtemp(path.join(os.tmpdir(), "rtunnel-deauth-"));
    t.teardown(() => rm(home, { recursive: true, force: true }));
    const key = parsePublicKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2cck8EOaHbiWbCBdjzWCjhONoEIKmWbfJB/kHOsUrH x");
    const other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSuiFL6Z+W79a9yoZoxkDyzGQnCCeTY2iTi/M6ttWZk mine";
    const file = path.join(home, ".ssh", "authorized_keys");
    await mkdir(path.dirname(file), { mode: 0o700 });
    const text = `${other}\n${key.type} ${key.base64} rtunnel-laptop-b\n# a comment\n`;
    await writeFile(file, text, { mode: 0o640 });

    // grep exits 2 (a full SD card) after writing part of its output: nothing may change.
    const bin = path.join(home, "bin");
    await mkdir(bin);
    await writeFile(path.join(bin, "grep"), "#!/bin/sh\nprintf 'ssh-ed25519 AAAA'\nexit 2\n", { mode: 0o755 });
    const failed = await runDeauthorize(shell, home, key, bin);
    t.not(failed.code, 0);
    t.regex(failed.stderr, /grep failed \(exit 2\)/);
    t.is(await readFile(file, "utf8"), text, "authorized_keys untouched");
    t.deepEqual((await readdir(path.dirname(file))).sort(), ["authorized_keys"], "no temp file left");

    const ok = await runDeauthorize(shell, home, key);
    t.is(ok.code, 0, ok.stderr);
    t.is(await readFile(file, "utf8"), `${other}\n# a comment\n`);
    t.is((await stat(file)).mode & 0o777, 0o640);
    // The key as the only line: grep keeps nothing (exit 1), which is success, and the file is empty.
    await writeFile(file, `${key.type} ${key.base64}\n`);
    t.is((await runDeauthorize(shell, home, key)).code, 0);
    t.is(await readFile(file, "utf8"), "");
    t.deepEqual((await readdir(path.dirname(file))).sort(), ["authorized_keys"]);
  });
}

test("narrowing a client's grant drops exactly the devices it no longer lists", (t) => {
  t.deepEqual(droppedDevices(["a", "b", "c"], ["b"]), ["a", "c"]);
  t.deepEqual(droppedDevices(["a"], ["a", "b"]), []);
  t.deepEqual(droppedDevices([], ["a"]), []);
});

test("remove: a relay that could not confirm the cut gets a warning naming what to do; a confirmed or older answer none", (t) => {
  t.regex(unconfirmedCutWarning("raspi", { sessionsEnded: false }) ?? "", /did not confirm that its open sessions ended: restart the relay container/);
  t.is(unconfirmedCutWarning("raspi", { sessionsEnded: true }), undefined);
  t.is(unconfirmedCutWarning("raspi", {}), undefined);
});
