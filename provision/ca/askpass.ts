// The CA passphrase: where it comes from (--passphrase-file, RTUNNEL_CA_PASSPHRASE_FILE, or a
// prompt on a terminal) and how ssh-keygen and ssh-add get it: through SSH_ASKPASS with
// SSH_ASKPASS_REQUIRE=force (OpenSSH 8.4+), a tiny script in a private temp directory that
// prints it from its environment. So the passphrase is never an argument of any program (ps
// shows arguments to everyone; a process's environment only to its owner and root), never in
// a file the kit writes, and never logged.
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { InputError, show } from "../../lib/input.ts";
import { ExitError, EXIT } from "../errors.ts";

/** The environment variable that names a passphrase file (CI, the demo, scripts). */
export const PASSPHRASE_FILE_ENV = "RTUNNEL_CA_PASSPHRASE_FILE";
/** The shortest passphrase accepted for a new CA. */
export const MIN_PASSPHRASE = 10;
// OpenSSH reads an askpass answer into a 1024-byte buffer and stops at the first CR or LF.
const MAX_PASSPHRASE = 1000;
const SECRET_ENV = "RTUNNEL_CA_ASKPASS_SECRET";

/** Pure: the passphrase of a passphrase file's text: its first line, checked. */
export function passphraseFromText(text: string, where: string, o: { minLength?: number } = {}): string {
  const first = text.split(/\r?\n/, 1)[0] ?? "";
  const min = o.minLength ?? 1;
  if (first.length < min) throw new InputError(`${where}: the passphrase (its first line) must be at least ${min} characters`);
  if (first.length > MAX_PASSPHRASE) throw new InputError(`${where}: the passphrase (its first line) must be at most ${MAX_PASSPHRASE} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(first)) throw new InputError(`${where}: the passphrase holds a control character`);
  return first;
}

/** The passphrase from a file, refused when others may read the file (as ssh refuses such keys). */
export async function readPassphraseFile(file: string, o: { minLength?: number } = {}): Promise<string> {
  const where = `passphrase file ${show(file)}`;
  const st = await stat(file).catch(() => {
    throw new InputError(`can't read the ${where}: give an existing file (mode 0600) whose first line is the CA passphrase`);
  });
  if (!st.isFile()) throw new InputError(`the ${where} is not a file`);
  if (process.platform !== "win32" && (st.mode & 0o077) !== 0) throw new InputError(`the ${where} may be read by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 ${file}`);
  return passphraseFromText(await readFile(file, "utf8"), where, o);
}

/** Asks on the terminal without echo; Ctrl-C or Ctrl-D cancels. */
export function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) return Promise.reject(new InputError("no terminal to ask for the CA passphrase on"));
  // No echo before the question shows: what is typed after it is never printed.
  stdin.setRawMode(true);
  stdin.setEncoding("utf8");
  process.stderr.write(question);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let buf = "";
    const done = () => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\r" || ch === "\n") {
          done();
          resolve(buf);
          return;
        }
        if (ch === "\u0003" || ch === "\u0004") {
          done();
          reject(new ExitError(EXIT.usage, "cancelled: nothing was changed"));
          return;
        }
        if (ch === "\u007f" || ch === "\b") buf = buf.slice(0, -1);
        else buf += ch;
      }
    };
    stdin.on("data", onData);
  });
}

/**
 * The CA passphrase: `--passphrase-file`, else the file named by RTUNNEL_CA_PASSPHRASE_FILE,
 * else asked on the terminal (twice when `confirm`, for a new CA). Without any of them: one
 * line saying how to give it.
 */
export async function obtainPassphrase(o: { file?: string; env?: NodeJS.ProcessEnv; confirm?: boolean; minLength?: number; prompt?: (q: string) => Promise<string> }): Promise<string> {
  const file = o.file ?? (o.env ?? process.env)[PASSPHRASE_FILE_ENV];
  if (file) return readPassphraseFile(file, { minLength: o.minLength });
  const prompt = o.prompt ?? (process.stdin.isTTY ? promptHidden : undefined);
  if (!prompt) throw new InputError(`the CA passphrase is needed: give --passphrase-file FILE or set ${PASSPHRASE_FILE_ENV}=FILE (a file of mode 0600 whose first line is the passphrase), or run on a terminal to be asked`);
  const first = passphraseFromText(await prompt("CA passphrase: "), "the passphrase", { minLength: o.minLength });
  if (o.confirm && (await prompt("CA passphrase again: ")) !== first) throw new InputError("the two passphrases differ: nothing was changed");
  return first;
}

/**
 * Runs `fn` with an environment in which ssh-keygen and ssh-add get `passphrase` from
 * SSH_ASKPASS (forced, with no terminal involved), at most `answers` times (ssh-add asks
 * again after a wrong passphrase until it gets an empty answer; ssh-keygen asks twice for a
 * new key), then removes the askpass script.
 */
export async function withAskpass<T>(passphrase: string, fn: (env: NodeJS.ProcessEnv) => Promise<T>, o: { answers?: number } = {}): Promise<T> {
  const answers = o.answers ?? 1;
  if (!Number.isInteger(answers) || answers < 1) throw new InputError(`askpass answers must be a positive integer (got ${show(answers)})`);
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-askpass-"));
  try {
    const script = path.join(dir, "askpass");
    // printf is a shell builtin: the passphrase is not an argument of any program run. Past
    // its answers the script prints nothing and fails, which ends ssh-add's retries.
    await writeFile(
      script,
      [
        "#!/bin/sh",
        `count="$(cat "${"$"}{0%/*}/count" 2>/dev/null || echo 0)"`,
        "count=$((count + 1))",
        `echo "$count" > "${"$"}{0%/*}/count"`,
        `[ "$count" -le ${answers} ] || exit 1`,
        `printf '%s\n' "$${SECRET_ENV}"`,
        "",
      ].join("\n"),
      { mode: 0o700 },
    );
    const env: NodeJS.ProcessEnv = { ...process.env, SSH_ASKPASS: script, SSH_ASKPASS_REQUIRE: "force", [SECRET_ENV]: passphrase };
    delete env.DISPLAY;
    return await fn(env);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
