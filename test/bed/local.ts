// Local helpers for the tests that run OpenSSH's tools on this machine (no Docker): a
// scratch directory and an ssh-agent of the test's own, both gone at its teardown.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { ExecutionContext } from "ava";
import { waitFor } from "../../lib/poll.ts";

export async function tempDir(t: ExecutionContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `rtunnel-${prefix}-`));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A real ssh-agent of this test's own (foreground, ended by its pid at teardown); its socket. */
export async function startAgent(t: ExecutionContext): Promise<string> {
  const dir = await tempDir(t, "agent");
  const sock = path.join(dir, "agent.sock");
  const agent = spawn("ssh-agent", ["-D", "-a", sock], { stdio: "ignore" });
  t.teardown(() => {
    agent.kill();
  });
  await waitFor("ssh-agent's socket", async () => existsSync(sock), { tries: 100, intervalMs: 100 });
  return sock;
}
