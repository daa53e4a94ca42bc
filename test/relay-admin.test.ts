// rtunneld-admin (the relay's Python admin command) without a container: its verbs in a
// temporary root, its refusals leaving the registry byte-for-byte as it was, and the facts it
// shares with the TypeScript side and the image's bash held to the same answers: which keys
// are accepted and their fingerprints, which names, a fingerprint's file name, a process's
// start time, the listening ports of /proc/net/tcp.
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import test from "ava";
import fc from "fast-check";
import { NAME_PATTERN } from "../lib/contract/relay.ts";
import { parsePublicKey } from "../lib/keys.ts";
import { listeningLoopbackPorts } from "../lib/net.ts";
import { run } from "../lib/proc.ts";
import { throwHostileCalls } from "./relay/hostile.ts";
import { ADMIN, keygen, krlBase64, LIB, PROC_NET_TCP, relayRoot, tmp } from "./relay/root.ts";
import { AddClientAnswer, AddDeviceAnswer, AuditAnswer, ListAnswer, RemoveAnswer } from "../provision/relay/protocol.ts";

/** Calls functions of rtunneld-admin as a Python module: JSON in, JSON out. */
async function python(calls: string): Promise<unknown> {
  const script = [
    "import importlib.machinery, importlib.util, json, sys",
    `loader = importlib.machinery.SourceFileLoader("admin", ${JSON.stringify(ADMIN)})`,
    "spec = importlib.util.spec_from_loader('admin', loader); m = importlib.util.module_from_spec(spec); loader.exec_module(m)",
    "args = json.load(sys.stdin)",
    calls,
  ].join("\n");
  return JSON.parse((await run("python3", ["-c", script], { input: "null" })).stdout);
}

test("rtunneld-admin accepts exactly the keys lib/keys.ts accepts, with the same fingerprints", async (t) => {
  const dir = await tmp(t);
  const ed = keygen(dir, "ed");
  const [type, body] = ed.split(" ") as [string, string];
  const lines = [
    ed, keygen(dir, "ec", "ecdsa", 256), keygen(dir, "rsa", "rsa", 3072), keygen(dir, "rsa2k", "rsa", 2048),
    "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIFKc6R/rKAlpC+Vp5+iRzjTTBM4rJ3sk8DJf2ym+IL0JAAAABHNzaDo= me",
    `restrict ${ed}`, `command="id" ${ed}`, `${type} ${body}===`, `${type} ${body.slice(0, -2)}Ab`, `ssh-rsa ${body}`, `${type} ${body.slice(0, 20)}`,
    `${type}  ${body}`, "ssh-dss AAAAB3NzaC1kc3M=", "", "hello world",
  ];
  const py = (await python(`
out = []
for line in ${JSON.stringify(lines)}:
    try:
        out.append(m.parse_key(line.encode())[2])
    except m.Refused as e:
        out.append(None)
print(json.dumps(out))`)) as (string | null)[];
  const ts = lines.map((l) => {
    try {
      return parsePublicKey(l).fingerprint;
    } catch {
      return null;
    }
  });
  t.deepEqual(py, ts, lines.map((l, i) => `${py[i] === ts[i] ? "same" : "DIFFERENT"}: ${l.slice(0, 60)}`).join("\n"));
  t.true(ts.filter(Boolean).length >= 4 && ts.filter((x) => x === null).length >= 8, "the table has accepted and refused keys");
});

test("rtunneld-admin and the CLI take the same names (fast-check)", async (t) => {
  const names = fc.sample(fc.oneof(fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,70}$/), fc.string({ maxLength: 70 }), fc.constantFrom("-x", "A", "a".repeat(63), "a".repeat(64), "raspi\n", "é")), 400);
  const py = (await python(`print(json.dumps([bool(m.NAME_RE.fullmatch(n)) for n in ${JSON.stringify(names)}]))`)) as boolean[];
  t.deepEqual(py, names.map((n) => NAME_PATTERN.test(n)));
  t.true(py.some(Boolean) && py.some((x) => !x));
});

test("a fingerprint's file name and a process's start time are the same in Python and in the image's bash library", async (t) => {
  const fps = ["SHA256:ab/c+d" + "x".repeat(36), `SHA256:${"+/".repeat(21)}a`, `SHA256:${"A".repeat(43)}`];
  const bash = fps.map((fp) => execFileSync("bash", ["-c", `. "$1"; safe_fp "$2"; printf %s "$REPLY"`, "bash", LIB, fp], { encoding: "utf8" }));
  const py = (await python(`print(json.dumps([m.safe_fp(f) for f in ${JSON.stringify(fps)}]))`)) as string[];
  t.deepEqual(py, bash);
  t.deepEqual(bash, fps.map((fp) => fp.slice(7).replaceAll("/", "_").replaceAll("+", "-")));
  const pid = process.pid;
  const bashStart = execFileSync("bash", ["-c", `. "$1"; start_time "$2"; printf %s "$REPLY"`, "bash", LIB, String(pid)], { encoding: "utf8" });
  t.regex(bashStart, /^\d+$/);
  t.is(await python(`print(json.dumps(m.proc_start_time(${pid})))`), bashStart);
  t.is(await python("print(json.dumps(m.proc_start_time(999999999)))"), null);
});

test("listening loopback ports of /proc/net/tcp: rtunneld-admin and lib/net.ts read the same", async (t) => {
  const ts = [...listeningLoopbackPorts(PROC_NET_TCP)].sort();
  t.deepEqual(ts, [20000, 20002]);
  t.deepEqual(await python(`print(json.dumps(sorted(m.listening_ports(${JSON.stringify(PROC_NET_TCP)}))))`), ts);
});

/** A /proc/net/tcp line of a socket listening on 127.0.0.1:port. */
const listenLine = (slot: number, port: number, inode: number) =>
  `   ${slot}: 0100007F:${port.toString(16).toUpperCase().padStart(4, "0")} 00000000:0000 0A 00000000:00000000 00:00000000 00000000  2001        0 ${inode} 1 0000000000000000 100 0 0 10 0`;

/** A server on a free 127.0.0.1 port that writes `banner` (or nothing) to each connection and counts them. */
async function bannerServer(t: { teardown: (f: () => void) => void }, banner: string | undefined) {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
    if (banner !== undefined) s.write(banner);
  });
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, connections: () => connections };
}

test("rtunneld-admin's verbs in a temporary root answer what the protocol module's schemas say", async (t) => {
  const dir = await tmp(t);
  const r = await relayRoot(dir, keygen(dir, "host").split(" ").slice(0, 2).join(" "));
  const json = async (words: string, input = "") => {
    const res = await r.call(words, input);
    t.is(res.code, 0, `${words}: ${res.stderr}`);
    return JSON.parse(res.stdout) as unknown;
  };
  // raspi's tunnel reaches an sshd (a server that sends a banner), nas's reaches nothing that answers.
  const sshd = await bannerServer(t, "SSH-2.0-OpenSSH_10.0 test\r\n");
  const silent = await bannerServer(t, undefined);
  const raspi = keygen(dir, "raspi");
  await r.portRange(`${sshd.port}-${sshd.port}`);
  const added = AddDeviceAnswer.parse(await json("add-device raspi", raspi));
  t.is(added.port, sshd.port);
  t.deepEqual(AddDeviceAnswer.parse(await json("add-device raspi", raspi)), added, "the same name and key again is a no-op");
  await r.portRange(`${silent.port}-${silent.port}`);
  const nas = AddDeviceAnswer.parse(await json("add-device nas", keygen(dir, "nas")));
  t.is(nas.port, silent.port);
  t.deepEqual(AddClientAnswer.parse(await json("add-client lap --devices raspi", keygen(dir, "lap"))), { name: "lap", devices: ["raspi"] });
  t.deepEqual(AddClientAnswer.parse(await json("add-client desk --all", keygen(dir, "desk"))), { name: "desk", devices: ["nas", "raspi"] });
  // Both tunnels listen; only raspi's far end answers: raspi is online, nas is not.
  await r.sockets([listenLine(0, sshd.port, 11), listenLine(1, silent.port, 12)]);
  const list = ListAnswer.parse(await json("list"));
  t.deepEqual(list.map((e) => [e.name, e.kind, e.online]), [["nas", "device", false], ["raspi", "device", true], ["desk", "client", false], ["lap", "client", false]]);
  t.deepEqual(list.filter((e) => e.kind === "device").map((e) => [e.name, e.listening, e.banner]), [["nas", true, null], ["raspi", true, "SSH-2.0-OpenSSH_10.0 test"]]);
  t.deepEqual(list.map((e) => [e.connections, e.limit, e.lastRefused]), [[0, 2, null], [0, 2, null], [0, 32, null], [0, 32, null]]);
  t.is(sshd.connections(), 1);
  // A second list within the cache's life asks nobody again; a new tunnel (a new socket) is probed at once.
  await json("list");
  t.is(sshd.connections(), 1, "the answer came from the cache");
  await r.sockets([listenLine(0, sshd.port, 21), listenLine(1, silent.port, 12)]);
  t.true(ListAnswer.parse(await json("list")).find((e) => e.name === "raspi")!.online);
  t.is(sshd.connections(), 2, "a new listening socket is probed again");
  const rendered = await readFile(path.join(r.runDir, "keys", "current", "tunnel", parsePublicKey(raspi).fingerprint.slice(7).replaceAll("/", "_").replaceAll("+", "-")), "utf8");
  t.regex(rendered, new RegExp(`^restrict,port-forwarding,command="/usr/sbin/nologin",permitlisten="127\\.0\\.0\\.1:${sshd.port}" ssh-ed25519 \\S+ rtunnel:device:raspi:${sshd.port}\n$`));
  // No reaper runs here: remove says it could not confirm the cut.
  const removed = await r.call("remove nas");
  t.is(removed.code, 0, removed.stderr);
  t.deepEqual(RemoveAnswer.parse(JSON.parse(removed.stdout)), { removed: "nas", sessionsEnded: false });
  t.regex(removed.stderr, /warning: cannot reach the reaper/);
  const audit = AuditAnswer.parse(await json("audit"));
  t.deepEqual(audit.map((e) => (e.type === "change" ? `${e.verb} ${e.name}` : e.type)), ["add-device raspi", "add-device nas", "add-client lap", "add-client desk", "remove nas"]);
  const hk = await r.call("host-key");
  t.regex(hk.stdout, /^ssh-ed25519 \S+\n$/);
});

test("bad input to rtunneld-admin: one line, a non-zero exit, the registry and the certificate trust byte-for-byte as they were (fast-check, 200 cases)", async (t) => {
  // 200 process starts one after another: minutes on a loaded 2-core machine, and nothing
  // here is timed; the limit only keeps a hung call from hanging the suite.
  t.timeout(20 * 60_000);
  const dir = await tmp(t);
  const r = await relayRoot(dir, keygen(dir, "host").split(" ").slice(0, 2).join(" "));
  const good = keygen(dir, "good");
  t.is((await r.call("add-device existing", keygen(dir, "existing"))).code, 0);
  // A CA and a KRL already set: a refused call must leave them as they are, too.
  t.is((await r.call("set-user-ca", keygen(dir, "ca"))).code, 0);
  const krl = await krlBase64(dir);
  t.is((await r.call("set-krl", krl)).code, 0);
  const refused = await throwHostileCalls(t, { good, existing: "existing", krl, runs: 200, call: (c) => r.call(c.line, c.key), registry: () => r.registry(), state: () => r.state() });
  t.log(`${refused} of 200 hostile calls refused`);
  t.true(refused >= 150, `only ${refused} refusals: the generator missed its target`);
});
