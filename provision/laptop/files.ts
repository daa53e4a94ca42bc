// The laptop side on disk: ~/.ssh/config.d/rtunnel, ~/.ssh/known_hosts.rtunnel and the one
// Include line in ~/.ssh/config. Paths through node:path and os.homedir(), and no program run
// but `ssh -O exit`, so the same code serves Windows' and macOS' OpenSSH. The files are read (and checked
// writable) before the first change anywhere, every text is computed before the first write,
// each file is replaced atomically (temp file fsynced, then renamed; through a symlink to its
// target), and ~/.ssh/config is copied to config.rtunnel-backup before our first change to it.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, copyFile, mkdir, open, readFile, readlink, realpath, rename, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ExitError, EXIT } from "../errors.ts";
import { fingerprintOf, parsePublicKey, type PublicKey } from "../../lib/keys.ts";
import { run } from "../../lib/proc.ts";
import { configPath } from "../validate.ts";
import { ensureInclude, pinnedDeviceKey, readModel, RELAY_ALIAS, renderFragment, renderKnown, type LaptopModel } from "./model.ts";

export interface LaptopPaths {
  home: string;
  sshDir: string;
  /** ~/.ssh/config */
  config: string;
  backup: string;
  /** ~/.ssh/config.d/rtunnel */
  fragment: string;
  knownHosts: string;
  windows: boolean;
}

export function laptopPaths(o: { home?: string; sshDir?: string; windows?: boolean } = {}): LaptopPaths {
  const home = o.home ?? os.homedir();
  const sshDir = path.resolve(o.sshDir ?? path.join(home, ".ssh"));
  return {
    home,
    sshDir,
    config: path.join(sshDir, "config"),
    backup: path.join(sshDir, "config.rtunnel-backup"),
    fragment: path.join(sshDir, "config.d", "rtunnel"),
    knownHosts: path.join(sshDir, "known_hosts.rtunnel"),
    windows: o.windows ?? process.platform === "win32",
  };
}

/** How these paths are spelled inside ssh_config; throws InputError when one can't be. */
export function configPaths(p: LaptopPaths, identityFile: string) {
  const cp = (abs: string) => configPath(abs, p.home, p.windows);
  return { fragment: cp(p.fragment), knownHosts: cp(p.knownHosts), identity: cp(path.resolve(identityFile)) };
}

/** Why a laptop file can't be used, as one line with the fix (nothing has been changed yet). */
function fileProblem(file: string, e: NodeJS.ErrnoException, doing: "read" | "replace"): ExitError {
  const why =
    e.code === "EACCES" || e.code === "EPERM"
      ? `permission denied (often root-owned after a \`sudo ssh\`: sudo chown -R "$USER" ${path.dirname(file)})`
      : e.code === "ENOTDIR"
        ? "a part of its path is a file, not a directory: move that file away"
        : e.code === "EISDIR"
          ? "it is a directory: move it away"
          : (e.code ?? e.message);
  return new ExitError(EXIT.usage, `can't ${doing} ${file}: ${why}; nothing was changed`);
}

/** A laptop file's text, or undefined when it does not exist; any other problem is one clear ExitError. */
export async function readLaptopFile(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT") return undefined;
    throw fileProblem(file, err, "read");
  }
}

/** Where a write to `file` lands: through a symlink (dotfile managers link ~/.ssh/config) to its target. */
export async function writeTarget(file: string): Promise<string> {
  try {
    return await realpath(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  try {
    // A dangling link: write where it points, so the link becomes whole.
    const link = await readlink(file);
    return path.resolve(path.dirname(file), link);
  } catch {
    return file;
  }
}

/**
 * Read-only: whether atomicWrite(file) would succeed as far as the disk can tell now: the
 * target (through a symlink) is not a directory, and its nearest existing ancestor is a
 * writable directory. Throws one clear ExitError otherwise.
 */
export async function checkWritable(file: string): Promise<void> {
  let target: string;
  try {
    target = await writeTarget(file);
    const st = await stat(target).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));
    if (st?.isDirectory()) throw Object.assign(new Error("EISDIR"), { code: "EISDIR" });
  } catch (e) {
    throw fileProblem(file, e as NodeJS.ErrnoException, "replace");
  }
  let dir = path.dirname(target);
  for (;;) {
    const st = await stat(dir).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(fileProblem(file, e, "replace"))));
    if (st) {
      if (!st.isDirectory()) throw fileProblem(file, Object.assign(new Error("ENOTDIR"), { code: "ENOTDIR" }), "replace");
      await access(dir, constants.W_OK | constants.X_OK).catch((e: NodeJS.ErrnoException) => Promise.reject(fileProblem(file, e, "replace")));
      return;
    }
    const up = path.dirname(dir);
    if (up === dir) return;
    dir = up;
  }
}

/**
 * Replaces a file atomically: a temp file beside its target (through a symlink), flushed to
 * disk, then renamed over it, so a crash leaves the old text or the new one, never a part.
 * An existing file keeps its mode; a new one is 0600.
 */
export async function atomicWrite(file: string, text: string): Promise<void> {
  const target = await writeTarget(file);
  const dir = path.dirname(target);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const mode = (await stat(target).catch(() => undefined))?.mode ?? 0o600;
  const tmp = `${target}.tmp-${randomBytes(4).toString("hex")}`;
  try {
    const fh = await open(tmp, "wx", mode & 0o777);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  // The rename itself, on disk (not possible on Windows, where directories can't be opened).
  await open(dir, "r")
    .then(async (d) => {
      await d.sync().catch(() => undefined);
      await d.close();
    })
    .catch(() => undefined);
}

export interface PlannedWrite {
  file: string;
  text: string;
}

/** The laptop's files as they are now: read once, before any change anywhere. */
export interface LaptopState {
  fragment?: string;
  known?: string;
  config?: string;
  backup?: string;
}

/**
 * Read-only: the current texts of the rtunnel files and ~/.ssh/config, and a check that each
 * can be replaced. Enrollment calls it before it changes anything, so an unreadable config
 * (root-owned after a `sudo ssh`) or a `config.d` that is a file stops it at the start.
 */
export async function readLaptop(p: LaptopPaths): Promise<LaptopState> {
  const [fragment, known, config, backup] = await Promise.all([p.fragment, p.knownHosts, p.config, p.backup].map(readLaptopFile));
  for (const f of [p.knownHosts, p.fragment, p.config, p.backup]) await checkWritable(f);
  return { fragment, known, config, backup };
}

/** The model of what is on disk; paths the fragment was written with are kept. */
export function laptopModel(p: LaptopPaths, s: LaptopState, identityFile: string): LaptopModel {
  const spelled = configPaths(p, identityFile);
  return readModel(s.fragment, s.known, { identityFile: spelled.identity, knownHostsFile: spelled.knownHosts });
}

// Unix-domain socket paths hold at most 104 bytes on macOS (108 on Linux); ssh makes the
// master's socket under a temporary name 17 characters longer first, and %C is 40.
const SOCKET_PATH_MAX = 104;
const CONTROL_NAME = "rtunnel-%C";

/**
 * Where the relay hop's master socket goes, spelled for ssh_config: in the ssh directory the
 * files are written to (never elsewhere: the demo's must not touch ~/.ssh); undefined on
 * Windows (its OpenSSH has no ControlMaster) or when that path is too long for a socket.
 */
export function controlPathFor(p: LaptopPaths): string | undefined {
  if (p.windows) return undefined;
  if (path.join(p.sshDir, CONTROL_NAME).length - "%C".length + 40 + 17 > SOCKET_PATH_MAX) return undefined;
  try {
    return `${configPath(p.sshDir, p.home, false)}/${CONTROL_NAME}`;
  } catch {
    return undefined; // a directory ssh_config can't spell
  }
}

/**
 * Pure: the writes that bring the disk to `model`, from the state readLaptop returned; the
 * Include line in ~/.ssh/config too, unless `include` is false (a command that only removes).
 */
export function planLaptopWrites(p: LaptopPaths, s: LaptopState, model: LaptopModel, o: { include?: boolean } = {}): LaptopPlan {
  const paths = configPaths(p, p.fragment);
  // A fragment without its relay hop can't be rendered (nor used): it is left as it is.
  const fragmentText = model.relays.size ? renderFragment(model) : s.fragment;
  const knownText = renderKnown(model);
  const include = o.include === false ? { text: s.config ?? "", changed: false } : ensureInclude(s.config, paths.fragment);
  const writes: PlannedWrite[] = [];
  if (fragmentText !== undefined && fragmentText !== s.fragment) writes.push({ file: p.fragment, text: fragmentText });
  if (knownText !== s.known) writes.push({ file: p.knownHosts, text: knownText });
  if (include.changed) writes.push({ file: p.config, text: include.text });
  return { writes, backup: include.changed && s.config !== undefined && s.backup === undefined };
}

export interface LaptopPlan {
  writes: PlannedWrite[];
  backup: boolean;
}

export async function applyLaptop(p: LaptopPaths, plan: LaptopPlan): Promise<string[]> {
  await mkdir(p.sshDir, { recursive: true, mode: 0o700 });
  if (plan.backup) await copyFile(p.config, p.backup);
  // Pinned keys first, then the Host blocks, then the Include: a crash in between never leaves
  // a Host block without its pinned key, nor an Include pointing at a missing fragment.
  const rank = (file: string) => (file === p.knownHosts ? 0 : file === p.fragment ? 1 : file === p.config ? 3 : 2);
  const ordered = [...plan.writes].sort((a, b) => rank(a.file) - rank(b.file));
  for (const w of ordered) await atomicWrite(w.file, w.text);
  return [...(plan.backup ? [p.backup] : []), ...ordered.map((w) => w.file)];
}

/** The host key an earlier enrollment pinned for `device`, as a fingerprint. */
export async function pinnedDeviceFingerprint(p: LaptopPaths, device: string): Promise<string | undefined> {
  const key = pinnedDeviceKey(readModel(undefined, (await readLaptopFile(p.knownHosts)) ?? "", { identityFile: "", knownHostsFile: "" }), device);
  return key ? fingerprintOf(Buffer.from(key.base64, "base64")) : undefined;
}

/** The laptop's ssh client config file (for `ssh -F`), and a best-effort close of a live master to the relay. */
export async function closeRelayMaster(p: LaptopPaths): Promise<boolean> {
  const r = await run("ssh", ["-F", p.config, "-O", "exit", RELAY_ALIAS], { check: false, timeoutMs: 15_000 }).catch(() => undefined);
  return r?.code === 0;
}

/**
 * A public key file a person names (`--key`, this laptop's own .pub): one line for a file that
 * can't be read (`hint` says what to pass) and for a private key passed by mistake.
 */
export async function readPublicKeyFile(file: string, what: string, hint = "a public key file"): Promise<PublicKey> {
  const text = await readFile(file, "utf8").catch(() => {
    throw new ExitError(EXIT.usage, `can't read ${what} ${file}: pass ${hint} (id_ed25519.pub)`);
  });
  if (/PRIVATE KEY/.test(text)) throw new ExitError(EXIT.usage, `${what} ${file} is a PRIVATE key: pass the .pub file, and never copy the private half anywhere`);
  return parsePublicKey(text.trim(), `${what} ${file}`);
}
