// Local programs (docker, pulumi) without a shell: argv in, output collected.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";

export interface ProcResult {
  stdout: string;
  stderr: string;
  code: number;
}

export function runLocal(file: string, args: readonly string[], opts: { input?: string; cwd?: string; timeoutMs?: number } = {}): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], cwd: opts.cwd });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    const timer = opts.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs) : undefined;
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      if (timer) clearTimeout(timer);
      resolve({ stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), code: code ?? 128 });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

export function spawnLocal(file: string, args: readonly string[]): ChildProcessWithoutNullStreams {
  return spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] });
}

/** Quotes one word for a POSIX shell (the device's commands run through its login shell). */
export function sh(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
