// The admin command over real ssh: every verb's happy path, every kind of bad input refused
// with one line and the registry left byte-for-byte unchanged, and 20 enrollments as parallel as
// the admin key's connection limit allows.
import test from "ava";
import { RELAY_CA_PATHS } from "../lib/contract/ca.ts";
import { RELAY_CONNECTION_LIMITS } from "../lib/contract/relay.ts";
import { ensureDocker, exec, mapLimit, useScope } from "./bed/index.ts";
import { ANSWERS, type JsonVerb } from "../provision/relay/protocol.ts";
import { fixtureShapes, shapeOf } from "./protocol/fixtures.ts";
import { throwHostileCalls } from "./relay/hostile.ts";
import { startRelay } from "./relay/fixture.ts";

/** Admin calls at once: one below the admin key's limit (a finished call's server process may outlive the client by a moment). */
const ADMIN_AT_ONCE = RELAY_CONNECTION_LIMITS.admin.max - 1;

test.before(async () => {
  await ensureDocker();
});

interface DeviceOut { name: string; port: number; fingerprint: string }
interface Row { name: string; kind: string; port: number | null; fingerprint: string; online: boolean; connectedSince: string | null; lastSeen: string | null }

test("[docker] admin verbs: add-device, add-client, list, remove and host-key do what the protocol says", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const k1 = await r.key("raspi");
  const fp1 = (await exec(r.client, ["ssh-keygen", "-lf", "/k/raspi.pub"])).stdout.split(" ")[1];

  const a = await r.adminJson<DeviceOut>(["add-device", "raspi"], k1);
  t.deepEqual(a, { name: "raspi", port: 20000, fingerprint: fp1! });
  const before = await r.registry();
  t.deepEqual(await r.adminJson(["add-device", "raspi"], k1), a, "the same name and key again returns the same port");
  t.is(await r.registry(), before, "and writes nothing");

  const other = await r.key("other");
  const clash = await r.admin(["add-device", "raspi"], other);
  t.is(clash.code, 3);
  t.regex(clash.stderr, /^rtunneld-admin: device raspi exists with another key .*--replace/);
  const replaced = await r.adminJson<DeviceOut>(["add-device", "raspi", "--replace"], other);
  t.is(replaced.port, a.port, "rotation keeps the port");
  t.not(replaced.fingerprint, a.fingerprint);

  const b = await r.adminJson<DeviceOut>(["add-device", "nas"], await r.key("nas"));
  t.is(b.port, 20001, "the next free port of RTUNNELD_PORT_RANGE");
  t.deepEqual(await r.adminJson(["add-client", "laptop", "--devices", "raspi"], await r.key("laptop")), { name: "laptop", devices: ["raspi"] });
  t.deepEqual(await r.adminJson(["add-client", "desk", "--all"], await r.key("desk")), { name: "desk", devices: ["nas", "raspi"] });
  const unknown = await r.admin(["add-client", "tab", "--devices", "raspi,nope"], await r.key("tab"));
  t.is(unknown.code, 3);
  t.regex(unknown.stderr, /no such device: nope/);

  const rows = await r.adminJson<Row[]>(["list"]);
  t.deepEqual(rows.map((x) => [x.name, x.kind, x.port, x.online]), [
    ["nas", "device", 20001, false], ["raspi", "device", 20000, false], ["desk", "client", null, false], ["laptop", "client", null, false],
  ]);
  for (const row of rows) t.deepEqual(Object.keys(row).slice(0, 7), ["name", "kind", "port", "fingerprint", "online", "connectedSince", "lastSeen"]);

  await r.tunnel("other", a.port);
  const online = (await r.adminJson<Row[]>(["list"])).find((x) => x.name === "raspi")!;
  t.true(online.online);
  t.regex(online.connectedSince ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  t.deepEqual(await r.adminJson(["remove", "nas"]), { removed: "nas", sessionsEnded: true });
  const gone = await r.admin(["remove", "nas"]);
  t.is(gone.code, 3);
  t.regex(gone.stderr, /no device or client named nas/);
  t.deepEqual((await r.adminJson<Row[]>(["list"])).map((x) => x.name), ["raspi", "desk", "laptop"]);

  const hk = await r.admin(["host-key"]);
  t.is(hk.code, 0);
  t.is(hk.stdout.trim(), r.hostKey);

  // Every answer the real relay gave is one the CLI's schemas take, and has the shape of the
  // protocol's JSON fixtures (which the unit suite holds to the same schemas).
  const answers: [JsonVerb, unknown][] = [
    ["add-device", a], ["add-device", replaced], ["add-device", b],
    // (the answers deep-equalled above)
    ["add-client", { name: "laptop", devices: ["raspi"] }], ["add-client", { name: "desk", devices: ["nas", "raspi"] }],
    ["list", rows], ["remove", { removed: "nas", sessionsEnded: true }], ["audit", await r.adminJson(["audit"])],
  ];
  for (const [verb, answer] of answers) {
    t.true(ANSWERS[verb].safeParse(answer).success, `${verb}: ${JSON.stringify(answer).slice(0, 200)}`);
    const shapes = fixtureShapes(verb);
    for (const item of Array.isArray(answer) ? answer : [answer]) t.true(shapes.has(JSON.stringify(shapeOf(item))), `${verb}: an answer shaped unlike any fixture: ${JSON.stringify(item)}`);
  }

  // The audit log in the state volume names every change.
  const audit = (await exec(r.container, ["cat", "/var/lib/rtunneld/registry/audit.log"])).stdout.trim().split("\n").map((l) => JSON.parse(l) as { verb: string; name: string });
  t.deepEqual(audit.map((e) => `${e.verb} ${e.name}`), ["add-device raspi", "add-device raspi", "add-device nas", "add-client laptop", "add-client desk", "remove nas"]);
});

test("[docker] admin bad input: a clear one-line error, a non-zero exit, and the registry byte-for-byte unchanged", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const good = await r.key("good");
  await r.adminJson(["add-device", "existing"], await r.key("existing"));
  const [registry, audit] = [await r.registry(), (await exec(r.container, ["cat", "/var/lib/rtunneld/registry/audit.log"])).stdout];
  const blob = good.split(" ")[1]!;
  const priv = (await exec(r.client, ["cat", "/k/good"])).stdout;

  const badNames: [string, string[]][] = [
    ["a name with a space", ["add-device", "my", "raspi"]],
    ["a slash", ["add-device", "home/raspi"]],
    ["uppercase", ["add-device", "Raspi"]],
    ["64 characters", ["add-device", "a".repeat(64)]],
    ["a leading hyphen", ["add-device", "-raspi"]],
    ["shell metacharacters ;", ["add-device", "pi;id"]],
    ["shell metacharacters $()", ["add-device", "$(id)"]],
    ["shell metacharacters |`", ["add-device", "pi|`id`"]],
    ["a dot-dot path", ["add-device", "../../etc"]],
    ["unicode", ["add-device", "raspï"]],
    ["no name", ["add-device"]],
    ["an unknown option", ["add-device", "pi", "--force"]],
    ["a bad client device list", ["add-client", "lap", "--devices", "existing,Bad"]],
    ["an unknown verb", ["drop-table", "x"]],
    ["no verb", []],
    ["remove with metacharacters", ["remove", "existing;rm"]],
  ];
  const badKeys: [string, string | Buffer][] = [
    ["two keys (a newline inside)", `${good}\n${good}\n`],
    ["a carriage return inside", `${good}\r${good}`],
    ["double quotes", `ssh-ed25519 ${blob} "quoted"`],
    ["single quotes", `ssh-ed25519 ${blob} it's`],
    ["an options prefix", `restrict ${good}`],
    ["a command= option", `command="/bin/sh" ${good}`],
    ["a permitlisten option", `permitlisten=0.0.0.0:22,port-forwarding ${good}`],
    ["a private key", priv],
    ["garbage", "hello world\n"],
    ["a bad base64 body", "ssh-ed25519 AAAA!!notbase64\n"],
    ["a body of another type", `ssh-rsa ${blob}\n`],
    ["a truncated body", `ssh-ed25519 ${blob.slice(0, 40)}\n`],
    ["nothing", ""],
    ["1 MB of input", Buffer.alloc(1024 * 1024, "A")],
    ["binary", Buffer.from([0xff, 0xfe, 0x00, 0x01])],
  ];
  const cases = [
    ...badNames.map(([what, words]) => ({ what, words, input: good as string | Buffer })),
    ...badKeys.map(([what, input]) => ({ what: `key: ${what}`, words: ["add-device", "fresh"], input })),
    ...badKeys.slice(0, 6).map(([what, input]) => ({ what: `client key: ${what}`, words: ["add-client", "lap", "--all"], input })),
  ];
  // A few at a time: each case is an ssh login and a python start on a shared 2-core machine,
  // and one admin key holds at most RELAY_CONNECTION_LIMITS.admin live connections (one less
  // here: a finished call's server process may outlive the client by a moment).
  const results = await mapLimit(cases, ADMIN_AT_ONCE, async (c) => ({ c, res: await r.admin(c.words, c.input) }));
  const wrong: string[] = [];
  for (const { c, res } of results) {
    const lines = res.stderr.trim().split("\n");
    if (res.code === 0 || lines.length !== 1 || !/^rtunneld-admin: \S.{10,}/.test(lines[0]!) || res.stdout !== "") {
      wrong.push(`${c.what}: exit ${res.code}, stdout ${JSON.stringify(res.stdout.slice(0, 100))}, stderr ${JSON.stringify(res.stderr.slice(0, 300))}`);
    }
  }
  t.deepEqual(wrong, [], "every bad input gets exactly one error line and a non-zero exit");
  t.log(results.slice(0, 3).concat(results.slice(-8)).map(({ c, res }) => `${c.what} -> ${res.code} ${res.stderr.trim()}`).join("\n"));
  t.is(await r.registry(), registry, "the registry is byte-for-byte unchanged");
  t.is((await exec(r.container, ["cat", "/var/lib/rtunneld/registry/audit.log"])).stdout, audit, "nothing was audited");
  t.deepEqual((await exec(r.container, ["sh", "-c", "ls -A /var/lib/rtunneld/registry"])).stdout.split("\n").filter(Boolean).sort(), [".lock", "audit.log", "registry.json"], "no temp file left behind");
});

test(`[docker] 20 add-device calls, ${ADMIN_AT_ONCE} at a time, get 20 distinct ports and leave a valid registry`, async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const names = Array.from({ length: 20 }, (_, i) => `dev${i}`);
  const keys = await Promise.all(names.map((n) => r.key(n)));
  // As parallel as the admin key's connection limit allows: the registry's lock is what is tested.
  const out = await mapLimit(names, ADMIN_AT_ONCE, (n, i) => r.adminJson<DeviceOut>(["add-device", n], keys[i]));
  const ports = out.map((o) => o.port);
  t.is(new Set(ports).size, 20, `ports: ${ports.join(",")}`);
  t.true(ports.every((p) => p >= 20000 && p < 20020), "the lowest 20 ports of the range");
  const reg = JSON.parse(await r.registry()) as { devices: Record<string, { port: number; fingerprint: string }> };
  t.deepEqual(Object.keys(reg.devices).sort(), [...names].sort());
  for (const o of out) t.is(reg.devices[o.name]!.port, o.port);
  // And every one of them can hold its tunnel: the rendered keys match the registry.
  await Promise.all(out.slice(0, 5).map((o) => r.tunnel(o.name, o.port)));
  t.pass();
});

test("[docker] 200 hostile admin calls over ssh (fast-check: names, flags, keys, long and binary lines): each refused with one line, the registry byte-for-byte as it was after each", async (t) => {
  t.timeout(30 * 60_000);
  const scope = useScope(t);
  const r = await startRelay(scope);
  await r.adminJson(["add-device", "existing"], await r.key("existing"));
  const good = await r.key("good");
  // One multiplexed admin connection, one command at a time,
  // so 200 calls cost one handshake and stay inside the admin key's connection limit.
  const mux = ["-T", "-o", "ControlMaster=auto", "-o", "ControlPath=/tmp/admin-mux-%C", "-o", "ControlPersist=300"];
  // A user CA and a KRL already set (certificates): a refused call leaves them as they are too.
  const ca = await r.key("userca");
  await r.adminJson(["set-user-ca"], ca);
  const krl = (await exec(r.client, ["sh", "-c", "ssh-keygen -q -k -f /k/hostile.krl && base64 -w0 /k/hostile.krl"])).stdout.trim();
  await r.adminJson(["set-krl"], krl);
  const caFiles = [RELAY_CA_PATHS.userCa, RELAY_CA_PATHS.krl, RELAY_CA_PATHS.runUserCa, RELAY_CA_PATHS.runKrl];
  const state = async () => (await r.registry()) + (await exec(r.container, ["sh", "-c", `for f in ${caFiles.join(" ")}; do base64 -w0 "$f"; echo; done`], { check: false })).stdout;
  const refused = await throwHostileCalls(t, { good, existing: "existing", krl, runs: 200, call: (c) => r.ssh("admin", "admin", mux, c.words, c.key), registry: () => r.registry(), state });
  t.log(`${refused} of 200 hostile calls refused by the real relay`);
  t.true(refused >= 150, `only ${refused} refusals: the generator missed its target`);
});
