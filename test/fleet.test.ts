// The fleet commands' pure parts: revoked devices from the relay's history, the status exit
// code, names in the audit, and the laptop side without a revoked device.
import test from "ava";
import { resolveAudit } from "../provision/audit.ts";
import { fleetStatus, revokedDevices, statusExitCode } from "../provision/list.ts";
import type { AuditEvent, RelayEntry } from "../provision/relay.ts";
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
