// The fleet commands' pure parts: one replay of the relay's history for `status` (revoked
// devices) and `audit` (names and grants at each moment), the status exit code, the client
// name enrollment keeps, and the laptop side without a revoked device.
import test from "ava";
import { parsePublicKey } from "../lib/keys.ts";
import { resolveAudit } from "../provision/commands/audit.ts";
import { droppedDevices } from "../provision/commands/clients.ts";
import { fleetStatus, renderList, statusExitCode, summaryLine } from "../provision/commands/status.ts";
import { emptyModel, readModel, renderFragment, renderKnown, withDevice, withoutDevice, withRelay } from "../provision/laptop/model.ts";
import { unconfirmedCutWarning } from "../provision/relay/admin.ts";
import { replay, revokedDevices } from "../provision/relay/history.ts";
import type { AuditEvent, ChangeEvent, ClientListing, ConnectionEvent, DeviceListing } from "../provision/relay/protocol.ts";
import { enrollClientName, keyHeldElsewhere } from "../provision/relay/registry.ts";

const FP = (c: string) => `SHA256:${c.repeat(43)}`;
const T = (s: number) => `2026-01-01T00:00:${String(s).padStart(2, "0")}Z`;
const idle = { connectedSince: null, lastSeen: null, connections: 0, limit: 2, lastRefused: null };
const dev = (name: string, online: boolean): DeviceListing => ({ ...idle, name, kind: "device", port: 20000, fingerprint: FP("a"), online, listening: online, banner: online ? "SSH-2.0-OpenSSH_10.0" : null });
const client = (name: string, fp: string, devices: string[]): ClientListing => ({ ...idle, name, kind: "client", fingerprint: FP(fp), online: false, limit: 32, devices, all: false });
const addDevice = (s: number, name: string, fp: string): ChangeEvent => ({ time: T(s), type: "change", verb: "add-device", name, fingerprint: FP(fp), port: 20000, from: "10.0.0.1" });
const addClient = (s: number, name: string, fp: string, devices: string[]): ChangeEvent => ({ time: T(s), type: "change", verb: "add-client", name, fingerprint: FP(fp), all: false, devices, from: "10.0.0.1" });
const remove = (s: number, name: string, kind: "device" | "client", fp: string): ChangeEvent => ({ time: T(s), type: "change", verb: "remove", name, kind, fingerprint: FP(fp), from: "10.0.0.1" });
const conn = (s: number, account: ConnectionEvent["account"], fp: string, key: string | null): ConnectionEvent => ({ time: T(s), type: "connection", account, fingerprint: FP(fp), key, pid: s });

test("a device whose last registry change is a remove is revoked, until the name is added again", (t) => {
  const events = [addDevice(0, "a", "a"), addDevice(1, "b", "b"), remove(2, "a", "device", "a"), remove(3, "b", "device", "b"), addDevice(4, "b", "c"), remove(5, "laptop", "client", "d")];
  t.deepEqual(revokedDevices(replay(events), [dev("b", true)]), [{ name: "a", fingerprint: FP("a"), revokedAt: T(2) }]);
  // A revoked name taken by a client is no revoked device any more.
  t.deepEqual(revokedDevices(replay([...events, addClient(6, "a", "e", [])]), [dev("b", true)]), []);
});

test("status exits 0 only when every registered device is online; revoked ones don't count, and show", (t) => {
  const revoked = [addDevice(1, "gone", "g"), remove(2, "gone", "device", "g")];
  const all = fleetStatus([dev("a", true), dev("b", true)], revoked);
  t.is(statusExitCode(all), 0);
  t.deepEqual(all.entries.map((e) => [e.name, e.state]), [["a", "online"], ["b", "online"], ["gone", "revoked"]]);
  t.is(statusExitCode(fleetStatus([dev("a", true), dev("b", false)], revoked)), 7);
  t.is(statusExitCode(fleetStatus([], [])), 0);
});

test("status: a tunnel that listens with no sshd answering is 'no answer', not online; connections, limits and the last refusal show", (t) => {
  const silent: DeviceListing = { ...dev("b", false), listening: true, connections: 2, lastRefused: { time: T(9), reason: "limit", limit: 2 } };
  const s = fleetStatus([dev("a", true), silent], []);
  t.deepEqual(s.entries.map((e) => [e.name, e.state]), [["a", "online"], ["b", "no-answer"]]);
  t.is(statusExitCode(s), 7);
  const table = renderList(s.entries).split("\n");
  t.regex(table[0]!, /NAME\s+KIND\s+STATE\s+PORT\s+CONNS\s+CONNECTED SINCE\s+LAST SEEN\s+LAST REFUSED/);
  t.regex(table[2]!, /^b\s+device\s+no answer\s+20000\s+2\/2\s+.*2026-01-01T00:00:09Z \(limit 2\)/);
  t.regex(summaryLine(s), /^1\/2 devices online, 1 with a tunnel but no answer from the device's sshd \(exit 7/);
});

test("the audit names devices and laptops, and the device a laptop could reach then, from the same replay", (t) => {
  const events: AuditEvent[] = [
    addDevice(1, "raspi", "a"),
    addClient(2, "laptop", "l", ["raspi"]),
    conn(3, "tunnel", "a", "device:raspi:20000"),
    conn(4, "jump", "l", "client:laptop"),
    remove(5, "raspi", "device", "a"),
    conn(6, "tunnel", "a", null),
    conn(7, "jump", "l", "client:laptop"),
    conn(8, "jump", "z", null),
    { ...conn(9, "jump", "l", "client:laptop"), refused: "limit", limit: 32 },
    { ...conn(10, "tunnel", "b", "device:nas:20001"), refused: "limit", limit: 2 },
    conn(11, "admin", "m", "admin:1"),
    { ...conn(12, "admin", "m", "admin:1"), refused: "limit", limit: 4 },
  ];
  const rows = resolveAudit(events);
  t.deepEqual(rows.map((r) => [r.event, r.who, r.device]), [
    ["add-device", "raspi", "raspi"],
    ["add-client", "laptop", "-"],
    ["tunnel", "raspi", "raspi"],
    ["connect", "laptop", "raspi"],
    ["remove", "raspi", "-"],
    ["refused", "device raspi (removed)", "-"],
    ["connect", "laptop", "-"],
    ["refused", "unknown jump key", "-"],
    ["refused", "laptop", "-"],
    ["refused", "nas", "nas"],
    ["admin", "admin key 1", "-"],
    ["refused", "admin key 1", "-"],
  ]);
  t.deepEqual(rows.slice(-4).map((r) => r.detail), ["jump key at its limit of 32 live connections", "tunnel key at its limit of 2 live connections", `key ${FP("m").slice(0, 19)}...`, "admin key at its limit of 4 live connections"]);
  const end = replay(events);
  t.deepEqual(end.grants.get("laptop"), [], "the removed device left the grant");
});

test("revoking takes the device's Host block and pin out of the model, keeping the paths and everything else", (t) => {
  const key = parsePublicKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2cck8EOaHbiWbCBdjzWCjhONoEIKmWbfJB/kHOsUrH x");
  let m = withRelay(emptyModel({ identityFile: "~/.ssh/my key", knownHostsFile: "~/.ssh/known_hosts.rtunnel" }), { host: "relay.example.net", port: 12345, hostKey: key });
  m = withDevice(withDevice(m, { name: "a", port: 20000, user: "pi", hostKey: key }), { name: "b", port: 20001, user: "pi", hostKey: key });
  const read = readModel(renderFragment(m), renderKnown(m), { identityFile: "~/.ssh/other", knownHostsFile: "~/.ssh/other_known" });
  t.is(read.identityFile, "~/.ssh/my key", "the paths the fragment was written with");
  const after = withoutDevice(read, "a");
  t.notRegex(renderFragment(after), /Host a\n/);
  t.regex(renderFragment(after), /Host b\n/);
  t.regex(renderFragment(after), /IdentityFile "~\/\.ssh\/my key"/);
  t.notRegex(renderKnown(after), /^rtunnel-a /m);
  t.regex(renderKnown(after), /^rtunnel-b ssh-ed25519 /m);
});

test("enrollment keeps the client name the relay already holds the operator's key under, and refuses before any change what it can't do", (t) => {
  const laptop = client("laptop-old-hostname", "k", ["raspi"]);
  const registry = [dev("raspi", true), laptop, client("laptop-new-hostname", "o", [])];
  // The hostname changed: the default name is new, the key is not.
  t.deepEqual(enrollClientName([dev("raspi", true), laptop], { fingerprint: FP("k"), wanted: "laptop-new-hostname", explicit: false }), { client: "laptop-old-hostname", entry: laptop, reused: true });
  t.deepEqual(enrollClientName([laptop], { fingerprint: FP("k"), wanted: "laptop-old-hostname", explicit: true }), { client: "laptop-old-hostname", entry: laptop, reused: false });
  t.deepEqual(enrollClientName([laptop], { fingerprint: FP("n"), wanted: "fresh", explicit: false }), { client: "fresh", reused: false });
  t.throws(() => enrollClientName([laptop], { fingerprint: FP("k"), wanted: "work", explicit: true }), { message: /already registered on the relay as client laptop-old-hostname: pass --client laptop-old-hostname/ });
  t.throws(() => enrollClientName(registry, { fingerprint: FP("n"), wanted: "laptop-new-hostname", explicit: false }), { message: /client name laptop-new-hostname is already taken on the relay by another key/ });
  t.throws(() => enrollClientName(registry, { fingerprint: FP("n"), wanted: "raspi", explicit: true }), { message: /client name raspi is already taken on the relay by another device/ });
  t.throws(() => enrollClientName(registry, { fingerprint: FP("a"), wanted: "me", explicit: false }), { message: /registered on the relay as device raspi: a laptop needs a key of its own/ });
  t.is(keyHeldElsewhere(registry, FP("k"), "laptop-b")?.name, "laptop-old-hostname");
  t.is(keyHeldElsewhere(registry, FP("k"), "laptop-old-hostname"), undefined);
});

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
