// The relay's own programs without a container: rtunneld-admin (Python) and the bash helpers
// (the key lookup, the principals command, the log reader) run on this machine in a temporary
// root laid out as the entrypoint lays out /run/rtunneld and /var/lib/rtunneld. rtunneld-admin
// moves its paths with RTUNNELD_TEST_ROOT; the bash helpers source a copy of the image's
// library whose RUN and STATE point into the root (their own files are copied with the path
// of the library replaced): nothing in the image reads its paths from the environment.
import { execFileSync, spawn } from "node:child_process";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { RELAY_CA_PATHS } from "../../lib/contract/ca.ts";
import { RELAY_RUN_DIR, RELAY_STATE_PATH } from "../../lib/contract/relay.ts";
import { repoRoot } from "../../lib/paths.ts";
import { waitFor } from "../../lib/poll.ts";
import { run, type RunResult } from "../../lib/proc.ts";

export const IMAGE = path.join(repoRoot, "images", "rtunneld");
export const ADMIN = path.join(IMAGE, "rtunneld-admin");
export const LIB = path.join(IMAGE, "rtunneld-lib.sh");
const group = execFileSync("id", ["-gn"], { encoding: "utf8" }).trim();

interface Teardown {
  teardown: (f: () => void | Promise<void>) => void;
}

export async function tmp(t: Teardown): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-admin-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A new key pair in `dir`; its public line. */
export function keygen(dir: string, name: string, type = "ed25519", bits?: number): string {
  const file = path.join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", type, ...(bits ? ["-b", String(bits)] : []), "-N", "", "-C", name, "-f", file]);
  return execFileSync("cat", [`${file}.pub`], { encoding: "utf8" }).trim();
}

export const PROC_NET_TCP = [
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 0100007F:4E20 00000000:0000 0A 00000000:00000000 00:00000000 00000000  2001        0 1 1 0000000000000000 100 0 0 10 0",
  "   1: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0",
  "   2: 0100007F:4E21 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  2001        0 3 1 0000000000000000 100 0 0 10 0",
  "   3: 0100007F:4E22 00000000:0000 0A 00000000:00000000 00:00000000 00000000  2001        0 4 1 0000000000000000 100 0 0 10 0",
].join("\n");

export interface RelayRoot {
  dir: string;
  /** rtunneld-admin as the forced command: `words` in SSH_ORIGINAL_COMMAND */
  call(words: string, input?: string | Buffer): Promise<RunResult>;
  /** rtunneld-admin as the entrypoint runs it (argv: render, render-ca, admin-keys) */
  local(argv: readonly string[], input?: string): Promise<RunResult>;
  registry(): Promise<string>;
  /** the registry and every file of the certificate trust (state volume and runtime), byte for byte */
  state(): Promise<string>;
  runDir: string;
  stateDir: string;
  /** a path of the container (/run/rtunneld/..., /var/lib/rtunneld/...) inside the root */
  at(containerPath: string): string;
  portRange(range: string): Promise<void>;
  sockets(lines: string[]): Promise<void>;
  /** runs one of the image's bash helpers with the root's paths; stdin `input` */
  helper(name: Helper, args: readonly string[], input?: string): Promise<RunResult>;
  /** the path of that helper's copy (sourcing the root's library) */
  helperPath(name: Helper): string;
}

type Helper = "rtunneld-principals" | "rtunneld-connlog" | "rtunneld-keys" | "rtunneld-reaper";

/** A relay's directories in a temp root, as the entrypoint prepares them. `proc` replaces /proc for rtunneld-admin (default: a fake one; "real": the machine's). */
export async function relayRoot(dir: string, hostKey: string, o: { proc?: "fake" | "real" } = {}): Promise<RelayRoot> {
  const at = (p: string) => path.join(dir, p);
  const runDir = at(RELAY_RUN_DIR);
  const stateDir = at(RELAY_STATE_PATH);
  for (const d of ["keys", "online", "seen", "reaped", "sessions", "refused", "probes", "ca", "admin-keys"]) await mkdir(path.join(runDir, d), { recursive: true });
  await mkdir(path.join(stateDir, "registry"), { recursive: true });
  await mkdir(path.join(stateDir, "connections"), { recursive: true });
  await mkdir(at("proc/net"), { recursive: true });
  await writeFile(path.join(runDir, "port_range"), "20000-20009\n");
  await writeFile(path.join(runDir, "limits"), "tunnel 2\njump 32\nadmin 4\n");
  await writeFile(path.join(runDir, "ssh_host_ed25519_key.pub"), `${hostKey}\n`);
  await writeFile(at("proc/net/tcp"), `${PROC_NET_TCP}\n`);
  const env = { ...process.env, RTUNNELD_TEST_ROOT: dir, RTUNNELD_TEST_PROC: o.proc === "real" ? "/proc" : at("proc"), RTUNNELD_TEST_KEYS_GROUP: group };
  const registry = path.join(stateDir, "registry", "registry.json");
  // The bash helpers: the library with the root's RUN and STATE, each helper sourcing it.
  const bin = at("bin");
  await mkdir(bin, { recursive: true });
  const lib = (await readFile(LIB, "utf8")).replace(/^RUN=.*$/m, `RUN=${runDir}`).replace(/^STATE=.*$/m, `STATE=${stateDir}`);
  await writeFile(path.join(bin, "lib.sh"), lib);
  for (const h of ["rtunneld-principals", "rtunneld-connlog", "rtunneld-keys", "rtunneld-reaper"]) {
    const text = (await readFile(path.join(IMAGE, h), "utf8")).replace("/usr/local/lib/rtunneld/lib.sh", path.join(bin, "lib.sh"));
    await writeFile(path.join(bin, h), text);
    await chmod(path.join(bin, h), 0o755);
  }
  const read = (p: string) => readFile(p).then((b) => b.toString("base64"), () => "-");
  return {
    dir,
    call: (words, input = "") => run(ADMIN, [], { input, check: false, env: { ...env, SSH_ORIGINAL_COMMAND: words } }),
    local: (argv, input = "") => run(ADMIN, argv, { input, check: false, env }),
    registry: async () => readFile(registry, "utf8").catch(() => ""),
    async state() {
      const files = [registry, at(RELAY_CA_PATHS.userCa), at(RELAY_CA_PATHS.krl), path.join(runDir, "ca", "user_ca.pub"), path.join(runDir, "ca", "revoked.krl")];
      return (await Promise.all(files.map(read))).join("\n");
    },
    runDir,
    stateDir,
    at,
    portRange: (range) => writeFile(path.join(runDir, "port_range"), `${range}\n`),
    sockets: (lines) => writeFile(at("proc/net/tcp"), `${[PROC_NET_TCP.split("\n")[0], ...lines].join("\n")}\n`),
    helper: (name, args, input = "") => run(path.join(bin, name), args, { input, check: false, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } }),
    helperPath: (name) => path.join(bin, name),
  };
}

/**
 * A process whose /proc comm is `sshd-session` (a copy of sleep under that name), as the
 * records of a live connection name: its pid and start time. Ended at teardown.
 */
export async function fakeSession(t: Teardown, dir: string): Promise<{ pid: number; start: string; end: () => void }> {
  const exe = path.join(dir, "sshd-session");
  await copyFile(execFileSync("sh", ["-c", "command -v sleep"], { encoding: "utf8" }).trim(), exe).catch(() => undefined);
  await chmod(exe, 0o755);
  const child = spawn(exe, ["600"], { stdio: "ignore" });
  const end = () => {
    child.kill("SIGKILL");
  };
  t.teardown(end);
  const pid = child.pid!;
  return { pid, start: await sessionStart(pid), end };
}

/** Base64 of a KRL made by ssh-keygen in `dir` (revoking `serials` and `ids` of the CA `ca`, a public key file, and the public key files `keys`; nothing by default). */
export async function krlBase64(dir: string, o: { ca?: string; serials?: readonly string[]; ids?: readonly string[]; keys?: readonly string[]; version?: number } = {}): Promise<string> {
  const file = path.join(dir, `krl-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  const spec = `${file}.spec`;
  await writeFile(spec, [...(o.serials ?? []).map((s) => `serial: ${s}`), ...(o.ids ?? []).map((i) => `id: ${i}`)].map((l) => `${l}\n`).join(""));
  const specs = [...(o.serials?.length || o.ids?.length ? [spec] : []), ...(o.keys ?? [])];
  await run("ssh-keygen", ["-q", "-k", "-f", file, ...(o.ca ? ["-s", o.ca] : []), ...(o.version === undefined ? [] : ["-z", String(o.version)]), ...specs], { input: "" });
  return (await readFile(file)).toString("base64");
}

/** The start time of `pid` once its /proc comm is sshd-session (the exec is done). */
async function sessionStart(pid: number): Promise<string> {
  let start = "";
  await waitFor(`process ${pid} to run as sshd-session`, async () => {
    const comm = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "");
    const stat = comm.trim() === "sshd-session" ? await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "") : "";
    start = stat ? stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]! : "";
    return start !== "";
  }, { tries: 500, intervalMs: 20 });
  return start;
}

/** The program files named sshd-session (a shell and a sleep) that play a connection's privileged process. */
async function sessionPrograms(dir: string): Promise<{ shell: string; sleep: string }> {
  const which = (p: string) => execFileSync("sh", ["-c", `command -v ${p}`], { encoding: "utf8" }).trim();
  const out = { shell: path.join(dir, "session-shell", "sshd-session"), sleep: path.join(dir, "session-sleep", "sshd-session") };
  for (const [file, from] of [[out.shell, which("bash")], [out.sleep, which("sleep")]] as const) {
    await mkdir(path.dirname(file), { recursive: true });
    await copyFile(from, file).catch(() => undefined);
    await chmod(file, 0o755);
  }
  return out;
}

/**
 * A certificate offered to `jump` as sshd-session offers it: the root's principals command runs
 * as the child of a process named sshd-session (so its record names that connection), which
 * then stays alive (exec of a sleep also named sshd-session: same pid, same start time) as a
 * live connection does. The principals command's answer and the connection's pid/start.
 */
export async function certificateLogin(
  t: Teardown,
  root: RelayRoot,
  o: { certFile: string; caFile: string; keyId: string; serial: string; client: string; thenBareKey?: boolean },
): Promise<{ pid: number; start: string; line: string; end: () => void }> {
  const prog = await sessionPrograms(root.dir);
  const cert = (await readFile(o.certFile, "utf8")).split(" ")[1]!;
  const fp = (file: string) => execFileSync("ssh-keygen", ["-lf", file], { encoding: "utf8" }).split(" ")[1]!;
  const out = path.join(root.dir, `principals-${Date.now()}-${Math.random().toString(36).slice(2)}.out`);
  const argv = [root.helperPath("rtunneld-principals"), "jump", fp(o.certFile), `${o.client} 10.9.9.9 2222`, fp(o.caFile), o.keyId, o.serial, cert];
  // thenBareKey: the client offers the bare key next on the same connection (ssh does, after a
  // refused certificate): the key lookup runs for it as sshd runs it.
  const keys = o.thenBareKey ? `${JSON.stringify(root.helperPath("rtunneld-keys"))} jump "$3" "$4" ssh-ed25519 >/dev/null;` : "";
  const script = `"$@" >${JSON.stringify(out)}; ${keys} echo done >>${JSON.stringify(out)}; exec ${JSON.stringify(prog.sleep)} 600`;
  const child = spawn(prog.shell, ["-c", script, "sshd-session", ...argv], { stdio: "ignore", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  const end = () => {
    child.kill("SIGKILL");
  };
  t.teardown(end);
  const pid = child.pid!;
  let printed = "";
  await waitFor("the principals command to finish", async () => (printed = await readFile(out, "utf8").catch(() => "")).endsWith("done\n"), { tries: 500, intervalMs: 20 });
  return { pid, start: await sessionStart(pid), line: printed.slice(0, -"done\n".length), end };
}

/** Whether a process still runs (not a zombie). */
export async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && !/^\S+ \(.*\) Z /.test(stat);
}

/** The root's reaper (the image's rtunneld-reaper, with the root's paths) on its FIFO, stopped at teardown. */
export async function startReaper(t: Teardown, root: RelayRoot): Promise<{ log: () => string }> {
  const fifo = path.join(root.runDir, "reap");
  await run("mkfifo", ["-m", "0620", fifo]);
  let log = "";
  const child = spawn(root.helperPath("rtunneld-reaper"), [], { stdio: ["ignore", "ignore", "pipe"], env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  child.stderr.on("data", (b: Buffer) => (log += b.toString()));
  t.teardown(() => {
    child.kill("SIGKILL");
  });
  await waitFor("the reaper to be ready", async () => log.includes("rtunneld-reaper: ready"), { tries: 500, intervalMs: 20 });
  return { log: () => log };
}
