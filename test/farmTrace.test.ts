import test from "ava";
import { classifyFailure, describeTrace, farmTrace } from "../bench/farmTrace.ts";

const since = Date.parse("2026-12-08T01:00:00Z");
// Two devices' logs one after the other, as `cat /farm/log/*` gives them.
const logs = [
  "2026-12-08T00:59:58Z rtunnel: relay 172.18.0.4 port 2222, pinned host key ED25519 SHA256:x",
  "2026-12-08T00:59:59Z rtunnel: connecting to 172.18.0.4:2222",
  "2026-12-08T01:00:01Z rtunnel: lost: ssh: connect to host 172.18.0.4 port 2222: Connection refused (ssh exit 255, never up)",
  "2026-12-08T01:00:01Z rtunnel: backing off 0.7 s",
  "2026-12-08T01:00:02Z rtunnel: connecting to 172.18.0.4:2222",
  "2026-12-08T01:00:03Z rtunnel: lost: relay busy: kex_exchange_identification: Connection closed by remote host (ssh exit 255, never up)",
  "2026-12-08T01:00:09Z rtunnel: connecting to 172.18.0.4:2222",
  "2026-12-08T01:00:12Z rtunnel: up: relay 127.0.0.1:20000 -> 127.0.0.1:22",
  "2026-12-08T00:59:50Z rtunnel: relay 172.18.0.4 port 2222, pinned host key ED25519 SHA256:y",
  "2026-12-08T01:00:05Z rtunnel: connecting to 172.18.0.4:2222",
  "2026-12-08T01:00:15Z rtunnel: lost: Connection timed out during banner exchange (ssh exit 255, never up)",
  "2026-12-08T01:00:16Z rtunnel: connecting to 172.18.0.4:2222",
  "2026-12-08T01:00:20Z rtunnel: lost: Connection to 172.18.0.4 closed by remote host. (ssh exit 255, was up 3 s)",
].join("\n");

test("the farm trace counts attempts, tunnels up and why the rest failed, per bucket from the start", (t) => {
  const b = farmTrace(logs, since, 10);
  // The first "connecting" is before the start: not counted.
  t.deepEqual(b.map((x) => [x.at, x.attempts, x.up]), [[0, 3, 0], [10, 1, 1], [20, 0, 0]]);
  t.deepEqual(b[0]!.failed, { "relay down": 1, "dropped before the banner": 1 });
  t.deepEqual(b[1]!.failed, { "timed out": 1 });
  t.deepEqual(b[1]!.upAfter, [3], "an up is timed from its own device's connecting line");
  t.deepEqual(b[2]!.failed, {}, "a session that was up is not a failed attempt");
  t.regex(describeTrace(b, 10), /^0-10 s: 3 attempts, 0 up, 1 relay down, 1 dropped before the banner; 10-20 s: 1 attempts, 1 up \(median 3 s, max 3 s from connecting\), 1 timed out; 20-30 s: 0 attempts, 0 up$/);
});

test("a failure is classified by what ssh said", (t) => {
  t.is(classifyFailure("relay busy: kex_exchange_identification: read: Connection reset by peer"), "dropped before the banner");
  t.is(classifyFailure("ssh: connect to host 10.0.0.1 port 2222: Connection refused"), "relay down");
  t.is(classifyFailure("ssh: connect to host 10.0.0.1 port 2222: Connection timed out"), "timed out");
  t.is(classifyFailure("Permission denied (publickey)."), "other");
});
