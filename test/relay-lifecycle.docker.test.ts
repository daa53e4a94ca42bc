// The relay over time: recreated on its volume, a removal that cuts a live tunnel, a narrowed
// grant that cuts a laptop's live connection, what a key query without a signature can and
// cannot leave behind, files planted by the unprivileged helpers, the supervision of sshd and
// its helpers, a revoked device hammering from a shared address, and an outside audit of its
// algorithms.
import test from "ava";
import { docker, ensureDocker, exec, inspect, useScope, waitFor } from "./bed/index.ts";
import { sshArgv, startRelay } from "./relay/fixture.ts";

test.before(async () => {
  await ensureDocker();
});

interface Row { name: string; kind: string; port: number | null; fingerprint: string }

test("[docker] a relay recreated on the same volume keeps its devices, ports, clients and generated host key", async (t) => {
  const scope = useScope(t);
  // No host key mounted: the relay generates one into the state volume and must keep it.
  const r = await startRelay(scope, { mountHostKey: false });
  for (const n of ["a", "b", "c"]) await r.adminJson(["add-device", n], await r.key(n));
  await r.adminJson(["remove", "b"]);
  await r.adminJson(["add-client", "lap", "--devices", "a,c"], await r.key("lap"));
  const before = await r.adminJson<Row[]>(["list"]);
  const hostKey = (await r.admin(["host-key"])).stdout;

  await docker(["rm", "-f", r.container]);
  await r.restart();
  // The client pins the old host key (StrictHostKeyChecking yes): any new key fails here.
  const after = await r.adminJson<Row[]>(["list"]);
  t.deepEqual(after.map((x) => [x.name, x.kind, x.port, x.fingerprint]), before.map((x) => [x.name, x.kind, x.port, x.fingerprint]));
  t.is((await r.admin(["host-key"])).stdout, hostKey);
  t.regex((await docker(["logs", r.container])).stderr, /host key SHA256:\S+ from \/var\/lib\/rtunneld\/ssh_host_ed25519_key/);
  // The rendered keys came back too: a device and its client work without re-enrolling.
  await r.tunnel("c", before.find((x) => x.name === "c")!.port!);
  const w = await r.ssh("lap", "jump", ["-W", `127.0.0.1:${before.find((x) => x.name === "c")!.port}`], [], "");
  t.regex(w.stdout, /^SSH-2\.0-/);
});

test("[docker] remove cuts a device's live tunnel, and the device cannot come back", async (t) => {
  // How fast the cut is belongs to the bench (bench/RESULTS.md, "remove cuts a live tunnel"):
  // here, that it happens and holds.
  const scope = useScope(t);
  const r = await startRelay(scope);
  const { port } = await r.adminJson<{ port: number }>(["add-device", "raspi"], await r.key("raspi"));
  const other = await r.adminJson<{ port: number }>(["add-device", "other"], await r.key("other"));
  await r.tunnel("raspi", port);
  await r.tunnel("other", other.port);

  t.deepEqual(await r.adminJson(["remove", "raspi"]), { removed: "raspi", sessionsEnded: true });
  await waitFor("the removed device's port to close", async () => !(await r.listening(port)), { tries: 480, intervalMs: 250 });
  // Its ssh process saw the connection end (it exits rather than hanging on).
  await waitFor("the device's ssh to exit", async () =>
    !(await exec(r.client, ["pgrep", "-f", "--", `-R 127.0.0.1:${port}:`], { check: false })).stdout.trim(), { tries: 480, intervalMs: 250 });

  const again = await r.ssh("raspi", "tunnel", ["-N", "-o", "ExitOnForwardFailure=yes", "-R", `127.0.0.1:${port}:127.0.0.1:22`]);
  t.is(again.code, 255);
  t.regex(again.stderr, /Permission denied \(publickey\)/);
  t.false(await r.listening(port));
  t.true(await r.listening(other.port), "the other device's tunnel was not touched");
});

test("[docker] a revoked device retrying in a loop from a shared address does not lock out its neighbours", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const revoked = await r.adminJson<{ port: number }>(["add-device", "revoked"], await r.key("revoked"));
  const steady = await r.adminJson<{ port: number }>(["add-device", "steady"], await r.key("steady"));
  const late = await r.adminJson<{ port: number }>(["add-device", "late"], await r.key("late"));
  await r.adminJson(["remove", "revoked"]);
  await r.tunnel("steady", steady.port);

  // The same client container (one source address) tries the revoked key in a loop until
  // told to stop. With OpenSSH's default PerSourcePenalties (5 s per failed authentication,
  // enforced once 15 s have accrued) the address would be refused after the third attempt;
  // the neighbour below connects from it after at least ten, while the loop still runs.
  const bound = 5000;
  const loop = sshArgv(r.container, "revoked", "tunnel", ["-N", "-R", `127.0.0.1:${revoked.port}:127.0.0.1:22`]).map((a) => `'${a}'`).join(" ");
  const hammer = exec(r.client, ["sh", "-c", `n=0; while [ ! -f /tmp/hammer.stop ] && [ $n -lt ${bound} ]; do ${loop} 2>>/tmp/hammer.err; n=$((n+1)); echo $n > /tmp/hammer.count; done; echo $n`], { timeoutMs: 900_000 });
  const count = async () => Number((await exec(r.client, ["cat", "/tmp/hammer.count"], { check: false })).stdout.trim() || 0);
  await waitFor("ten refused attempts", async () => (await count()) >= 10, { tries: 480, intervalMs: 250 });
  // While it hammers, a neighbour connects from the same address and gets its tunnel.
  await r.tunnel("late", late.port);
  const during = await count();
  await exec(r.client, ["touch", "/tmp/hammer.stop"]);
  const total = Number((await hammer).stdout.trim());
  t.log(`the neighbour connected after ${during} refused attempts of the revoked key (${total} in all)`);
  t.true(total < bound, "the loop ran out before the neighbour connected: nothing was proven");
  t.regex((await exec(r.client, ["cat", "/tmp/hammer.err"])).stdout, /Permission denied \(publickey\)/, "the attempts were refused logins");
  t.true(await r.listening(steady.port), "the established tunnel survived");
  t.true(await r.listening(late.port), "the neighbour connected");
  t.false(await r.listening(revoked.port));
  const log = (await docker(["logs", r.container])).stderr;
  t.notRegex(log, /penalty: .* (refused|blocked)|drop connection .* penalty/i, "no source was penalised");
});

test("[docker] ssh-audit finds no failure and no warning on the running relay", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const res = await exec(r.client, ["ssh-audit", "--skip-rate-test", "-j", "-p", "2222", r.container], { check: false, timeoutMs: 120_000 });
  const report = JSON.parse(res.stdout) as { recommendations?: Record<string, unknown>; banner?: { software?: string } };
  t.log(`ssh-audit exit ${res.code}; banner ${JSON.stringify(report.banner)}`);
  const text = await exec(r.client, ["ssh-audit", "--skip-rate-test", "--no-colors", "-l", "warn", "-p", "2222", r.container], { check: false, timeoutMs: 120_000 });
  t.notRegex(text.stdout, /\(\w+\) .*-- \[(fail|warn)\]/, text.stdout);
  t.is(res.code, 0, `ssh-audit exit code (0 = all good):\n${text.stdout}`);
  t.deepEqual(report.recommendations ?? {}, {}, "ssh-audit recommends no change");
});

const PROHIBITED = /administratively prohibited/;
const safeFp = (fp: string) => fp.slice("SHA256:".length).replaceAll("/", "_").replaceAll("+", "-");
interface AuditRow { type: string; account?: string; fingerprint?: string; key?: string | null; pid?: number | null }
interface ListRow extends Row { online: boolean; connectedSince: string | null; lastSeen: string | null }

test("[docker] a live laptop connection loses what its grant loses: a narrowed grant or a removed device cuts it, and a freed port is not handed out again at once", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const add = async (n: string) => r.adminJson<{ port: number }>(["add-device", n], await r.key(n));
  const d1 = await add("dev1");
  const d2 = await add("dev2");
  await Promise.all([r.tunnel("dev1", d1.port), r.tunnel("dev2", d2.port)]);
  const alice = await r.key("alice");
  await r.adminJson(["add-client", "alice", "--devices", "dev1,dev2"], alice);

  // 1. A narrowed grant: alice's long-lived forward to dev2 (ssh -N -L, as ControlPersist or an
  // IDE holds it) ends with the grant, and a new connection gets the narrowed permitopen.
  await r.holdForward("alice", 18100, d2.port);
  t.regex(await r.readThrough(18100), /^SSH-2\.0/, "alice reaches dev2 through her held forward");
  t.deepEqual(await r.adminJson(["add-client", "alice", "--devices", "dev1"], alice), { name: "alice", devices: ["dev1"], sessionsEnded: true });
  await waitFor("alice's held forward to dev2 to end", async () => !(await r.holding(18100)), { tries: 480, intervalMs: 250 });
  t.is(await r.readThrough(18100), "");
  const narrowed = await r.ssh("alice", "jump", ["-W", `127.0.0.1:${d2.port}`]);
  t.is(narrowed.code, 255);
  t.regex(narrowed.stderr, PROHIBITED);

  // A grant that only widens leaves live connections alone.
  await r.holdForward("alice", 18101, d1.port);
  t.deepEqual(await r.adminJson(["add-client", "alice", "--devices", "dev1,dev2"], alice), { name: "alice", devices: ["dev1", "dev2"] });
  t.true(await r.holding(18101), "widening the grant cut a connection");
  t.regex(await r.readThrough(18101), /^SSH-2\.0/);

  // 2. A removed device: every connection that was granted it ends, by name (alice) or by
  // --all (bob: his permitopen list was fixed when he authenticated).
  await r.adminJson(["add-client", "bob", "--all"], await r.key("bob"));
  await r.holdForward("alice", 18102, d2.port);
  await r.holdForward("bob", 18103, d2.port);
  t.deepEqual(await r.adminJson(["remove", "dev2"]), { removed: "dev2", sessionsEnded: true });
  for (const lp of [18101, 18102, 18103]) {
    await waitFor(`the held forward ${lp} to end`, async () => !(await r.holding(lp)), { tries: 480, intervalMs: 250 });
  }
  // The next device gets a port never used before, not dev2's; dev2's port stays unreachable.
  const d3 = await add("dev3");
  t.not(d3.port, d2.port, "the freed port was handed out again at once");
  t.is(d3.port, Math.max(d1.port, d2.port) + 1, "the lowest port never used");
  t.truthy((JSON.parse(await r.registry()) as { freed?: Record<string, string> }).freed?.[String(d2.port)], "the registry remembers the freed port");
  await r.tunnel("dev3", d3.port);
  t.is(await r.readThrough(18102), "");
  // dev3 is no one's but bob's (--all); alice, granted dev1 only now, cannot reach it.
  const w = await r.ssh("alice", "jump", ["-W", `127.0.0.1:${d3.port}`]);
  t.regex(w.stderr, PROHIBITED);
  t.regex((await r.ssh("bob", "jump", ["-W", `127.0.0.1:${d3.port}`], [], "")).stdout, /^SSH-2\.0-/);
});

test("[docker] a key query without a signature (only the public key) leaves no connection in audit and no online state; a real login does", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const d = await r.adminJson<{ port: number }>(["add-device", "dev1"], await r.key("dev1"));
  await r.tunnel("dev1", d.port);
  await r.adminJson(["add-client", "alice", "--devices", "dev1"], await r.key("alice"));
  const fp = (await exec(r.client, ["ssh-keygen", "-lf", "/k/alice.pub"])).stdout.split(" ")[1]!;
  const aliceRows = async () => (await r.adminJson<AuditRow[]>(["audit"])).filter((e) => e.type === "connection" && e.fingerprint === fp);
  const aliceListed = async () => (await r.adminJson<ListRow[]>(["list"])).find((x) => x.name === "alice")!;

  // Someone holding alice.pub only: ssh offers it (the relay answers "key acceptable" after
  // running the key lookup), then has no private key to sign with.
  await exec(r.client, ["sh", "-c", "mkdir -p /k/pubonly && cp /k/alice.pub /k/pubonly/alice.pub"]);
  for (let i = 0; i < 3; i++) {
    const q = await r.ssh("pubonly/alice.pub", "jump", ["-v", "-W", `127.0.0.1:${d.port}`]);
    t.is(q.code, 255);
    t.regex(q.stderr, /Server accepts key: \/k\/pubonly\/alice\.pub/, "the query reached the key lookup");
    t.regex(q.stderr, /Permission denied \(publickey\)/);
  }
  t.regex((await docker(["logs", r.container])).stderr, /Postponed publickey for jump /);
  t.deepEqual(await aliceRows(), [], "a query without a signature is not a connection");
  const queried = await aliceListed();
  t.deepEqual([queried.online, queried.connectedSince, queried.lastSeen], [false, null, null]);

  // Records the unprivileged helpers could forge do not make a key online either: a session
  // record (rtkeys) naming a live sshd-session by pid only, and an online marker (rtlog) with
  // that pid but another start time.
  const tunnelPid = (await r.adminJson<AuditRow[]>(["audit"])).find((e) => e.type === "connection" && e.key === `device:dev1:${d.port}`)?.pid;
  t.true(typeof tunnelPid === "number", "the device's login is in the audit log with its pid");
  t.is((await docker(["exec", "-u", "rtkeys", r.container, "sh", "-c", `: > /run/rtunneld/sessions/${tunnelPid}.jump.${safeFp(fp)}`], { check: false })).code, 0);
  t.is((await docker(["exec", "-u", "rtlog", r.container, "sh", "-c", `: > /run/rtunneld/online/${tunnelPid}.1.jump.${safeFp(fp)}`], { check: false })).code, 0);
  t.false((await aliceListed()).online, "a record whose start time does not match made alice online");

  // A real login: one row naming the client, and online while it lasts.
  await r.holdForward("alice", 18200, d.port);
  const rows = await aliceRows();
  t.is(rows.length, 1, JSON.stringify(rows));
  t.is(rows[0]!.key, "client:alice");
  t.true(typeof rows[0]!.pid === "number");
  const online = await aliceListed();
  t.true(online.online);
  t.regex(online.connectedSince ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  t.regex((await docker(["logs", r.container])).stderr, new RegExp(`rtunneld-connlog: jump key ${fp.replace(/[+/]/g, "\\$&")} is client:alice \\(connection pid ${rows[0]!.pid}\\)`));
  // A refused key still leaves its row (key null).
  await r.key("stranger");
  await r.ssh("stranger", "jump", ["-W", `127.0.0.1:${d.port}`]);
  const strangerFp = (await exec(r.client, ["ssh-keygen", "-lf", "/k/stranger.pub"])).stdout.split(" ")[1]!;
  t.true((await r.adminJson<AuditRow[]>(["audit"])).some((e) => e.type === "connection" && e.fingerprint === strangerFp && e.key === null));
});

test("[docker] links, records and FIFOs planted by the key lookup's user (rtkeys) never make the root reaper write through them or hang", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  await r.adminJson(["add-device", "dev1"], await r.key("dev1"));
  await r.adminJson(["add-client", "alice", "--devices", "dev1"], await r.key("alice"));
  const fp = (await exec(r.client, ["ssh-keygen", "-lf", "/k/alice.pub"])).stdout.split(" ")[1]!;
  const safe = safeFp(fp);
  const registry = await r.registry();
  const asRtkeys = (cmd: string) => docker(["exec", "-u", "rtkeys", r.container, "sh", "-c", cmd], { check: false });
  const target = "/var/lib/rtunneld/registry/registry.json";

  // seen/ (lastSeen, written by root): rtkeys cannot plant anything there.
  const seen = await asRtkeys(`ln -s ${target} /run/rtunneld/seen/jump.${safe}`);
  t.not(seen.code, 0, "rtkeys could write in seen/");
  t.not((await asRtkeys(`: > /run/rtunneld/online/1.1.jump.${safe}`)).code, 0, "rtkeys could write in online/");
  // sessions/ is rtkeys' own: closed-connection records for alice's key (old and new naming),
  // a FIFO and a link to the registry, all in the names the reaper walks.
  const planted = await asRtkeys([
    "cd /run/rtunneld/sessions",
    `: > 999999.jump.${safe}`, `: > 999999.1.jump.${safe}`,
    `mkfifo 999998.1.jump.${safe}`, `ln -s ${target} 999997.1.jump.${safe}`,
  ].join(" && "));
  t.is(planted.code, 0, planted.stderr);

  // The reaper prunes them (asked now instead of in 30 s) and ends alice's sessions.
  await exec(r.container, ["sh", "-c", "echo prune > /run/rtunneld/reap"]);
  await waitFor("the reaper to prune", async () => /rtunneld-reaper: pruned [1-9]/.test((await docker(["logs", r.container])).stderr), { tries: 480, intervalMs: 250 });
  t.deepEqual(await r.adminJson(["remove", "alice"]), { removed: "alice", sessionsEnded: true }, "the reaper still answers");
  const after = JSON.parse(await r.registry()) as { devices: Record<string, unknown>; clients: Record<string, unknown> };
  t.deepEqual(Object.keys(after.devices), ["dev1"], "the registry survived");
  t.deepEqual(Object.keys(after.clients), []);
  t.deepEqual(JSON.parse(registry).devices, after.devices);
  t.is((await exec(r.container, ["sh", "-c", `find /run/rtunneld/seen /run/rtunneld/sessions -name '*${safe}*' | wc -l`])).stdout.trim(), "0");
  t.regex((await exec(r.container, ["stat", "-c", "%F %s", target])).stdout, /^regular file [1-9]/);
});

test("[docker] the relay never runs without its reaper: remove reports sessionsEnded false when the reaper does not confirm, and the container exits when the reaper, the log reader or sshd dies; SIGTERM stops it cleanly", async (t) => {
  t.timeout(3 * 60_000);
  const scope = useScope(t);
  const r = await startRelay(scope);
  const pidOf = async (pattern: string) => (await exec(r.container, ["pgrep", "-o", "-f", pattern])).stdout.trim();
  await r.adminJson(["add-device", "dev1"], await r.key("dev1"));
  await r.adminJson(["add-device", "dev2"], await r.key("dev2"));
  t.deepEqual(await r.adminJson(["remove", "dev1"]), { removed: "dev1", sessionsEnded: true });

  // A reaper that does not answer (stopped): the key is removed, the answer says so.
  const reaper = await pidOf("rtunneld-reaper");
  await exec(r.container, ["kill", "-STOP", reaper]);
  const res = await r.admin(["remove", "dev2"]);
  await exec(r.container, ["kill", "-CONT", reaper]);
  t.is(res.code, 0, res.stderr);
  t.deepEqual(JSON.parse(res.stdout), { removed: "dev2", sessionsEnded: false });
  t.regex(res.stderr, /warning: the reaper did not confirm/);

  // SIGTERM is handled: exit 0. Ignored, docker would SIGKILL after 10 s and report 137.
  await docker(["stop", "-t", "10", r.container]);
  t.is(await inspect(r.container, "{{.State.ExitCode}}"), "0");

  for (const [what, pattern, signal] of [
    ["the reaper (rtunneld-reaper)", "rtunneld-reaper", "KILL"],
    ["the connection log reader (rtunneld-connlog)", "rtunneld-connlog", "KILL"],
    ["sshd", "sshd: .*\\[listener\\]", "TERM"],
  ] as const) {
    await docker(["rm", "-f", r.container]);
    await r.restart();
    await exec(r.container, ["kill", `-${signal}`, await pidOf(pattern)]);
    await waitFor(`the relay to exit after ${what} died`, async () => (await inspect(r.container, "{{.State.Running}}")) === "false", { tries: 480, intervalMs: 250 });
    t.is(await inspect(r.container, "{{.State.ExitCode}}"), "15", what);
    t.regex((await docker(["logs", r.container])).stderr, new RegExp(`rtunneld: FATAL: ${what.replace(/[()]/g, "\\$&")} exited`), what);
  }
});

test("[docker] RTUNNELD_PORT_RANGE that includes the relay's own port 2222 is refused with one FATAL line", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const name = await r.runVariant({ portRange: "2000-3000" });
  await waitFor("the misconfigured relay to exit", async () => (await inspect(name, "{{.State.Running}}")) === "false", { tries: 480, intervalMs: 250 });
  t.is(await inspect(name, "{{.State.ExitCode}}"), "10");
  const logs = await docker(["logs", name]);
  t.is(logs.stdout, "");
  t.is(logs.stderr, "rtunneld: FATAL: RTUNNELD_PORT_RANGE must not include 2222, the relay's own sshd port (got '2000-3000')\n");
});
