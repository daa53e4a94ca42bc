import path from "node:path";
import { repoRoot, run, type RunResult } from "../bed/index.ts";

/**
 * The operator CLI as a person runs it: its own process, HOME (and Windows' USERPROFILE) at
 * `home` so that the default ~/.ssh is the test's own, and no ssh-agent to lean on.
 */
export function runCli(args: readonly string[], { home, timeoutMs = 180_000 }: { home?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...(home ? { HOME: home, USERPROFILE: home } : {}) };
  delete env.SSH_AUTH_SOCK;
  return run(process.execPath, ["--import", "tsx", path.join(repoRoot, "provision", "cli.ts"), ...args], { env, check: false, cwd: repoRoot, timeoutMs });
}
