// When a tunnel does not come up: what enrollment (and the demo) tell from the device's agent,
// what rotate-key tells from the relay's records, and the relay facts a demo writes.
import test from "ava";
import { diagnoseAgent, type AgentFacts } from "../provision/device/diagnosis.ts";
import type { ConnectionEvent } from "../provision/relay/protocol.ts";
import { parseRelayFacts, renderRelayFacts } from "../provision/relay/facts.ts";
import { rotationStall } from "../provision/commands/rotate.ts";

const relay = { host: "203.0.113.7", port: 12345 };
const running = { status: "running", running: true, exitCode: 0, restartCount: 0 };
const exited = (exitCode: number, restartCount = 3) => ({ status: "restarting", running: false, exitCode, restartCount });
const line = (s: string) => `2026-12-01T10:00:00Z rtunnel: ${s}`;

test("the agent's state and log lines name the likely cause and its fix", (t) => {
  const cases: [string, AgentFacts, RegExp, RegExp][] = [
    ["no container", { log: [], relay }, /^no agent container$/, /not created: re-run enrollment/],
    ["ssh cannot run (exit 69)", { state: exited(69), log: [line("FATAL: ssh cannot run as rtunnel: setpriv: failed to execute ssh: Permission denied")], relay },
      /restarting, exit code 69, restarted 3 times/, /rebuild the agent image on a base whose root directory is 0755/],
    ["a malformed env file (exit 65)", { state: exited(65, 1), log: [line("FATAL: /etc/rtunnel/rtunnel.env line 2 is not KEY=VALUE")], relay },
      /restarted 1 time$/, /stopped on a malformed \/etc\/rtunnel\/rtunnel\.env \(\/etc\/rtunnel\/rtunnel\.env line 2 is not KEY=VALUE\): re-run enrollment/],
    ["the relay refused the key", { state: running, log: [line("lost: tunnel@203.0.113.7: Permission denied (publickey). (ssh exit 255, never up)")], relay },
      /running, restarted 0 times/, /refuses the device's key/],
    ["the relay cannot be reached", { state: running, log: [line("lost: ssh: connect to host 203.0.113.7 port 12345: Connection refused (ssh exit 255, never up)")], relay },
      /running/, /cannot reach the relay at 203\.0\.113\.7:12345: .*deviceSide/],
    ["another relay host key", { state: running, log: [line("refused: the relay's host key ssh-ed25519 SHA256:x is not the one pinned")], relay },
      /running/, /another host key than the one pinned/],
    ["the port still held", { state: running, log: [line("lost: Error: remote port forwarding failed for listen port 20000 (ssh exit 255, never up)")], relay },
      /running/, /still holds the device's port/],
    ["a name the device cannot resolve", { state: running, log: [line("lost: ssh: Could not resolve hostname relay.example: Name or service not known (ssh exit 255, never up)")], relay },
      /running/, /cannot resolve 203\.0\.113\.7/],
    ["stopped for no known reason", { state: { status: "exited", running: false, exitCode: 0, restartCount: 0 }, log: [line("stopping")], relay },
      /exited, exit code 0/, /not running: start it/],
    ["running, nothing wrong yet", { state: running, log: [line("connecting to 203.0.113.7:12345")], relay }, /running/, /longer --timeout/],
    ["the tunnel is up, the device's sshd does not answer", { state: running, log: [line("up: relay 127.0.0.1:20000 -> localhost:22")], relay, tunnel: { listening: true, banner: null } },
      /running/, /device's sshd does not answer through it: check that sshd runs/],
    ["the tunnel answers: nothing to explain from the tunnel", { state: running, log: [line("connecting to 203.0.113.7:12345")], relay, tunnel: { listening: true, banner: "SSH-2.0-OpenSSH_10.0" } }, /running/, /longer --timeout/],
  ];
  for (const [what, facts, state, fix] of cases) {
    const d = diagnoseAgent(facts);
    t.regex(d.state, state, what);
    t.regex(d.fix, fix, what);
    t.false(/\n/.test(d.state + d.fix), `${what}: one line each`);
  }
});

test("a rotation that did not finish is explained from the relay's audit since the switch", (t) => {
  const OLD = `SHA256:${"o".repeat(43)}`;
  const NEW = `SHA256:${"n".repeat(43)}`;
  const o = { oldFingerprint: OLD, newFingerprint: NEW, since: "2026-12-01T10:00:05.123Z" };
  const conn = (time: string, fingerprint: string, key: string | null): ConnectionEvent => ({ time, type: "connection", account: "tunnel", fingerprint, key, pid: 1 });
  t.regex(rotationStall([], o), /has seen no connection from the device since the switch/);
  t.regex(rotationStall([conn("2026-12-01T10:00:01Z", OLD, "device:raspi:20000")], o), /has seen no connection/, "before the switch does not count");
  t.regex(rotationStall([conn("2026-12-01T10:00:06Z", OLD, null), conn("2026-12-01T10:00:09Z", OLD, null)], o), /still offers its old key \(refused 2 time\(s\) since the switch, last at 2026-12-01T10:00:09Z\)/);
  t.regex(rotationStall([conn("2026-12-01T10:00:07Z", NEW, "device:raspi:20000")], o), /accepted the new key 1 time\(s\)/);
  const atLimit = { ...conn("2026-12-01T10:00:08Z", NEW, "device:raspi:20000"), refused: "limit" as const, limit: 2 };
  t.regex(rotationStall([atLimit, atLimit], o), /refused the new key 2 time\(s\) for holding its limit of live connections/);
});

test("relay facts: a laptop side and a device side; the file the demo writes reads back the same", (t) => {
  const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2cck8EOaHbiWbCBdjzWCjhONoEIKmWbfJB/kHOsUrH";
  const text = renderRelayFacts({ host: "127.0.0.1", port: 49153, hostKey: key, deviceSide: { host: "172.18.0.2", port: 2222 } });
  const f = parseRelayFacts(JSON.parse(text), "relay.json");
  t.deepEqual([f.host, f.port, f.deviceSide], ["127.0.0.1", 49153, { host: "172.18.0.2", port: 2222 }]);
  const plain = parseRelayFacts({ host: "relay.example.net", port: 12345, hostKey: key }, "f");
  t.deepEqual(plain.deviceSide, { host: "relay.example.net", port: 12345 }, "without deviceSide, devices use the same address");
  t.false("deviceSide" in JSON.parse(renderRelayFacts({ host: "r.example", port: 1, hostKey: key, deviceSide: { host: "r.example", port: 1 } })));
  t.throws(() => parseRelayFacts({ host: "r", port: 1, hostKey: key, deviceSide: { host: "a b", port: 1 } }, "f"), { message: /^f: deviceSide host must be a DNS name/ });
  t.throws(() => parseRelayFacts({ host: "r", port: 1, hostKey: key, deviceSide: { host: "r", port: 70000 } }, "f"), { message: /^f: deviceSide port must be 1-65535/ });
});
