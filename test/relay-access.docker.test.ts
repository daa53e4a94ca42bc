// The access matrix: every account and kind of key against every thing an SSH client can ask
// for, each with the concrete outcome the relay must give. One relay serves all cases; the
// cases run a few at a time from one client container (so they all come from one address).
import test from "ava";
import { docker, ensureDocker, mapLimitPerKey, useScope } from "./bed/index.ts";
import { type Relay, sshArgv, startRelay } from "./relay/fixture.ts";

test.before(async () => {
  await ensureDocker();
});

interface Case {
  name: string;
  /** Runs in the client container; gets the relay, returns argv. */
  argv: (r: Relay) => string[];
  code?: number;
  stdout?: RegExp;
  stderr?: RegExp;
  /** Extra check on the relay after the case ran. */
}

/** One word for the client container's sh. */
const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

const DENIED_KEY = /Permission denied \(publickey\)/;
const NO_SESSION = /open failed|no more sessions|administratively prohibited/i;
const PROHIBITED = /administratively prohibited/;
const RFWD_FAILED = /remote port forwarding failed/;

test("[docker] the access matrix: each account may do exactly what DESIGN.md grants it", async (t) => {
  t.timeout(15 * 60_000);
  const scope = useScope(t);
  // The matrix asks what each account may do, not how many connections a key may hold (that
  // is relay-limits): its relay lets a key hold a few more than the defaults, so a finished
  // case whose connection sshd is still tearing down never turns a confinement answer into a
  // limit refusal. Cases still run one per key at a time (below), inside these limits.
  const r = await startRelay(scope, { clientFlags: ["--device", "/dev/net/tun"], settings: { limits: { tunnel: 4, jump: 8, admin: 8 } } });

  // dev1 and dev2 are online; dev3 is registered but offline (its port free); gone was removed.
  const add = async (name: string) => (await r.adminJson<{ port: number }>(["add-device", name], await r.key(name))).port;
  const [p1, p2, p3, pGone] = [await add("dev1"), await add("dev2"), await add("dev3"), await add("gone")];
  await r.adminJson(["add-client", "lap", "--devices", "dev1"], await r.key("lap"));
  await r.key("stranger");
  await r.adminJson(["remove", "gone"]);
  await Promise.all([r.tunnel("dev1", p1), r.tunnel("dev2", p2)]);
  const free = 29_999; // in the range, never allocated here

  // ssh(key, user, options..., "--", command...)
  const ssh = (key: string, user: string, ...args: string[]) => (rr: Relay) => {
    const i = args.indexOf("--");
    return i < 0 ? sshArgv(rr.container, key, user, args) : sshArgv(rr.container, key, user, args.slice(0, i), args.slice(i + 1));
  };
  // -L: a local listener in the client, then one connection through it; prints what came
  // back. The listener must come up (else the case fails loudly, "never listened").
  let localPort = 9100;
  const viaL = (key: string, user: string, target: string) => {
    const lp = localPort++;
    return (rr: Relay) => ["sh", "-c", [
      `${sshArgv(rr.container, key, user, ["-N", "-L", `127.0.0.1:${lp}:${target}`]).map(q).join(" ")} & pid=$!`,
      `up=0; for i in $(seq 480); do if nc -z 127.0.0.1 ${lp}; then up=1; break; fi; kill -0 $pid 2>/dev/null || break; sleep 0.25; done`,
      `if [ $up != 1 ]; then kill $pid 2>/dev/null; echo "never listened on ${lp}"; exit 99; fi`,
      `out=$(nc -w 30 127.0.0.1 ${lp} </dev/null | head -c 7)`,
      `kill $pid; wait $pid 2>/dev/null; echo "got:$out"`,
    ].join("; ")];
  };
  // -R: "granted" once the relay answers the forward request with success (ssh -v says so),
  // else ssh's own exit code and message when the relay refuses (ExitOnForwardFailure).
  // Nothing here waits a fixed time: each case ends on the relay's answer.
  const forwardR = (key: string, user: string, spec: string) => (rr: Relay) => ["sh", "-c", [
    `log=$(mktemp); ${sshArgv(rr.container, key, user, ["-v", "-N", "-o", "ExitOnForwardFailure=yes", "-R", spec]).map(q).join(" ")} 2>"$log" & pid=$!`,
    "i=0; while kill -0 $pid 2>/dev/null; do",
    "  if grep -q 'remote forward success' \"$log\"; then kill $pid; wait $pid 2>/dev/null; echo granted; exit 0; fi",
    "  i=$((i+1)); if [ $i -ge 720 ]; then kill $pid; echo 'undecided after 180 s'; exit 99; fi; sleep 0.25",
    "done",
    "wait $pid; rc=$?; grep -v '^debug' \"$log\" >&2; exit $rc",
  ].join("\n")];
  const GRANTED = /^granted$/m;

  const cases: Case[] = [
    // --- device key as tunnel
    { name: "device: no shell", argv: ssh("dev1", "tunnel", "-T"), code: 255, stderr: NO_SESSION },
    { name: "device: no exec", argv: ssh("dev1", "tunnel", "--", "id"), code: 255, stderr: NO_SESSION },
    { name: "device: no pty", argv: ssh("dev1", "tunnel", "-tt", "--", "id"), code: 255, stderr: NO_SESSION },
    { name: "device: no sftp", argv: ssh("dev1", "tunnel", "-s", "--", "sftp"), code: 255, stderr: NO_SESSION },
    { name: "device: no -W to its own port", argv: ssh("dev1", "tunnel", "-W", `127.0.0.1:${p1}`), code: 255, stderr: PROHIBITED },
    { name: "device: no -L to its own port", argv: viaL("dev1", "tunnel", `127.0.0.1:${p1}`), code: 0, stdout: /^got:$/m, stderr: PROHIBITED },
    { name: "device: no -W to another device's port", argv: ssh("dev1", "tunnel", "-W", `127.0.0.1:${p2}`), code: 255, stderr: PROHIBITED },
    { name: "device: no -W to the relay's sshd", argv: ssh("dev1", "tunnel", "-W", "127.0.0.1:2222"), code: 255, stderr: PROHIBITED },
    { name: "device: -R on its own port works", argv: forwardR("dev3", "tunnel", `127.0.0.1:${p3}:127.0.0.1:22`), code: 0, stdout: GRANTED },
    { name: "device: no -R on another device's (free) port", argv: forwardR("dev3", "tunnel", `127.0.0.1:${pGone}:127.0.0.1:22`), code: 255, stderr: RFWD_FAILED },
    { name: "device: no -R on a free port of the range", argv: forwardR("dev3", "tunnel", `127.0.0.1:${free}:127.0.0.1:22`), code: 255, stderr: RFWD_FAILED },
    { name: "device: no -R on 0.0.0.0", argv: forwardR("dev3", "tunnel", `0.0.0.0:${p3}:127.0.0.1:22`), code: 255, stderr: RFWD_FAILED },
    { name: "device: no -R on a wildcard address", argv: forwardR("dev3", "tunnel", `*:${p3}:127.0.0.1:22`), code: 255, stderr: RFWD_FAILED },
    { name: "device: no -R on a unix socket", argv: forwardR("dev3", "tunnel", "/tmp/rt.sock:127.0.0.1:22"), code: 255, stderr: RFWD_FAILED },
    // sshd answers a refused streamlocal open with "connect failed"; its log says why (below).
    { name: "device: no -L to a unix socket", argv: viaL("dev1", "tunnel", "/run/rtunneld/reap"), code: 0, stdout: /^got:$/m, stderr: /open failed: connect failed/ },
    { name: "client: no -L to a unix socket", argv: viaL("lap", "jump", "/run/rtunneld/reap"), code: 0, stdout: /^got:$/m, stderr: /open failed: connect failed/ },
    { name: "device: no tun forwarding", argv: ssh("dev1", "tunnel", "-N", "-o", "ExitOnForwardFailure=yes", "-w", "any"), code: 255, stderr: /Tunnel forwarding failed|open failed|prohibited/i },
    { name: "device: no agent or X11 (no session to carry them)", argv: (rr) => ["env", "DISPLAY=:0", ...sshArgv(rr.container, "dev1", "tunnel", ["-A", "-X"], ["id"])], code: 255, stderr: NO_SESSION },
    // --- client key as jump
    { name: "client: -W to a granted port reaches the device's sshd", argv: ssh("lap", "jump", "-W", `127.0.0.1:${p1}`), code: 0, stdout: /^SSH-2\.0-/ },
    { name: "client: -L to a granted port reaches the device's sshd", argv: viaL("lap", "jump", `127.0.0.1:${p1}`), code: 0, stdout: /^got:SSH-2\.0/m },
    { name: "client: no -W to a device it was not granted", argv: ssh("lap", "jump", "-W", `127.0.0.1:${p2}`), code: 255, stderr: PROHIBITED },
    { name: "client: no -L to a device it was not granted", argv: viaL("lap", "jump", `127.0.0.1:${p2}`), code: 0, stdout: /^got:$/m, stderr: PROHIBITED },
    { name: "client: no -W to a non-tunnel port", argv: ssh("lap", "jump", "-W", "127.0.0.1:2222"), code: 255, stderr: PROHIBITED },
    { name: "client: no -W to localhost:PORT spelled by name", argv: ssh("lap", "jump", "-W", `localhost:${p1}`), code: 255, stderr: PROHIBITED },
    { name: "client: no -W beyond the relay's loopback", argv: (rr) => sshArgv(rr.container, "lap", "jump", ["-W", `${rr.container}:2222`]), code: 255, stderr: PROHIBITED },
    { name: "client: no -R at all", argv: forwardR("lap", "jump", `127.0.0.1:${p3}:127.0.0.1:22`), code: 255, stderr: RFWD_FAILED },
    { name: "client: no -R on a unix socket", argv: forwardR("lap", "jump", "/tmp/rt.sock:127.0.0.1:22"), code: 255, stderr: RFWD_FAILED },
    { name: "client: no shell", argv: ssh("lap", "jump", "-T"), code: 255, stderr: NO_SESSION },
    { name: "client: no exec", argv: ssh("lap", "jump", "--", "id"), code: 255, stderr: NO_SESSION },
    { name: "client: no sftp", argv: ssh("lap", "jump", "-s", "--", "sftp"), code: 255, stderr: NO_SESSION },
    { name: "client: no tun forwarding", argv: ssh("lap", "jump", "-N", "-o", "ExitOnForwardFailure=yes", "-w", "any"), code: 255, stderr: /Tunnel forwarding failed|open failed|prohibited/i },
    // --- admin key as admin
    { name: "admin: list works", argv: ssh("admin", "admin", "--", "list"), code: 0, stdout: /"name": "dev1"/ },
    { name: "admin: no shell (the forced command answers)", argv: ssh("admin", "admin", "-T"), code: 2, stderr: /no command/ },
    { name: "admin: no exec of anything but the admin verbs", argv: ssh("admin", "admin", "--", "sh", "-c", "id"), code: 2, stderr: /unknown command "sh"/ },
    { name: "admin: no pty", argv: ssh("admin", "admin", "-tt", "--", "list"), stderr: /PTY allocation request failed/ },
    { name: "admin: no sftp", argv: ssh("admin", "admin", "-s", "--", "sftp"), code: 255, stderr: /subsystem request failed/ },
    { name: "admin: no -W", argv: ssh("admin", "admin", "-W", `127.0.0.1:${p1}`), code: 255, stderr: PROHIBITED },
    { name: "admin: no -L", argv: viaL("admin", "admin", `127.0.0.1:${p1}`), code: 0, stdout: /^got:$/m, stderr: PROHIBITED },
    { name: "admin: no -R", argv: forwardR("admin", "admin", `127.0.0.1:${free}:127.0.0.1:22`), code: 255, stderr: RFWD_FAILED },
    { name: "admin: no X11", argv: (rr) => ["env", "DISPLAY=:0", ...sshArgv(rr.container, "admin", "admin", ["-X"], ["host-key"])], code: 0, stderr: /X11 forwarding request failed/ },
    { name: "admin: no tun forwarding", argv: ssh("admin", "admin", "-o", "ExitOnForwardFailure=yes", "-w", "any", "--", "host-key"), stderr: /Tunnel forwarding failed|open failed|prohibited/i },
    // --- keys in the wrong place, unknown and removed keys, other auth methods
    { name: "unknown key: not as tunnel", argv: ssh("stranger", "tunnel", "-N", "-R", `127.0.0.1:${p3}:127.0.0.1:22`), code: 255, stderr: DENIED_KEY },
    { name: "unknown key: not as jump", argv: ssh("stranger", "jump", "-W", `127.0.0.1:${p1}`), code: 255, stderr: DENIED_KEY },
    { name: "unknown key: not as admin", argv: ssh("stranger", "admin", "--", "list"), code: 255, stderr: DENIED_KEY },
    { name: "removed device key: not as tunnel", argv: ssh("gone", "tunnel", "-N", "-R", `127.0.0.1:${pGone}:127.0.0.1:22`), code: 255, stderr: DENIED_KEY },
    { name: "device key presented as jump", argv: ssh("dev1", "jump", "-W", `127.0.0.1:${p1}`), code: 255, stderr: DENIED_KEY },
    { name: "client key presented as tunnel", argv: ssh("lap", "tunnel", "-N", "-R", `127.0.0.1:${p1}:127.0.0.1:22`), code: 255, stderr: DENIED_KEY },
    { name: "device key presented as admin", argv: ssh("dev1", "admin", "--", "list"), code: 255, stderr: DENIED_KEY },
    { name: "admin key presented as tunnel", argv: ssh("admin", "tunnel", "-N", "-R", `127.0.0.1:${free}:127.0.0.1:22`), code: 255, stderr: DENIED_KEY },
    { name: "admin key presented as root", argv: ssh("admin", "root", "--", "id"), code: 255, stderr: DENIED_KEY },
    {
      name: "password auth is not offered",
      argv: ssh("stranger", "tunnel", "-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "PasswordAuthentication=yes", "-o", "NumberOfPasswordPrompts=1"),
      code: 255, stderr: /Permission denied \(publickey\)\.|No more authentication methods/,
    },
    {
      name: "keyboard-interactive auth is not offered",
      argv: ssh("stranger", "jump", "-o", "BatchMode=no", "-o", "PreferredAuthentications=keyboard-interactive", "-o", "KbdInteractiveAuthentication=yes"),
      code: 255, stderr: /Permission denied \(publickey\)\.|No more authentication methods/,
    },
  ];
  t.true(cases.length >= 30);

  // A few at a time (every case is one more sshd process on a 2-core machine), and one case
  // per key at a time: dev1 and dev2 already hold their tunnels.
  const keyOf = (c: Case) => {
    const argv = c.argv(r);
    return argv[argv.indexOf("-i") + 1] ?? "none";
  };
  const results = await mapLimitPerKey(cases, { limit: 4, perKey: 1, keyOf }, async (c) => {
    const res = await scope.exec(r.client, c.argv(r), { check: false, timeoutMs: 240_000 });
    return { c, res };
  });
  // Every case is checked; all mismatches are reported together with what actually happened.
  const mismatches: string[] = [];
  for (const { c, res } of results) {
    const wrong = [
      c.code !== undefined && res.code !== c.code ? `exit ${res.code}, want ${c.code}` : "",
      c.stdout && !c.stdout.test(res.stdout) ? `stdout does not match ${c.stdout}` : "",
      c.stderr && !c.stderr.test(res.stderr) ? `stderr does not match ${c.stderr}` : "",
    ].filter(Boolean);
    if (wrong.length) {
      mismatches.push(`${c.name}: ${wrong.join("; ")}\n    stdout: ${JSON.stringify(res.stdout.slice(0, 200))}\n    stderr: ${JSON.stringify(res.stderr.slice(0, 400))}`);
    }
  }
  t.deepEqual(mismatches, [], `${mismatches.length} of ${cases.length} cases differ`);

  // The password case must fail because the server offers only publickey, not because the
  // client gave up: the server's list of methods is exactly "publickey".
  const methods = await scope.exec(r.client, [...sshArgv(r.container, "stranger", "tunnel", ["-v", "-o", "BatchMode=yes"])], { check: false });
  t.regex(methods.stderr, /Authentications that can continue: publickey\r?\n/);
  t.notRegex(methods.stderr, /Authentications that can continue: .*(password|keyboard-interactive)/);

  const log = (await docker(["logs", r.container])).stderr;
  // Each -L case opens the socket twice (the readiness probe, then the real connection).
  t.true((log.match(/refused streamlocal port forward: .* target \/run\/rtunneld\/reap/g) ?? []).length >= 2, "sshd refused the unix-socket forwards");
  t.notRegex(log, /rtunneld-reaper: .*malformed/, "nothing reached the reaper's FIFO through a forward");

  // Nothing a case did may leave a listener anywhere but the two device ports.
  t.false(await r.listening(free), "a free port of the range is listening");
  t.false(await r.listening(pGone), "the removed device's port is listening");
});
