// The one way the kit runs a local program (docker, ssh-keygen, pulumi, tar): argv in, no
// shell, output collected; a timeout is a hang guard that kills, never a verdict.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface RunOptions {
  input?: string | Buffer;
  /** throw a CommandError when the exit code is not 0 (default true) */
  check?: boolean;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: RunResult,
  ) {
    const detail = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(-5).join("\n");
    super(`${argv.join(" ")} exited ${result.code}: ${detail}`);
    this.name = "CommandError";
  }
}

/** Runs a program without a shell and collects its output. Rejects only when it cannot start, or (check) fails. */
export function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], env: opts.env ?? process.env, cwd: opts.cwd });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    const timer = opts.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs) : undefined;
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      const result = {
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8") + (signal ? `\n(killed by ${signal})` : ""),
        code: code ?? 128,
      };
      if ((opts.check ?? true) && result.code !== 0) reject(new CommandError([file, ...args], result));
      else resolve(result);
    });
    // The program may exit before reading all its input; its exit code tells.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

/** A program whose streams the caller wires (a `docker save` piped into an SSH channel). */
export function spawnProcess(file: string, args: readonly string[]): ChildProcessWithoutNullStreams {
  return spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] });
}

/** Whether a process of this machine still runs (EPERM: it does, as someone else). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
