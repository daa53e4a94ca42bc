// Makes sure a Docker engine answers. Where none runs and we may install one (root on Debian,
// the situation of these CI machines), install docker.io and start dockerd; anywhere else the
// engine that is there is used, and its absence is an error, never a skip.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync } from "node:fs";
import path from "node:path";
import { run } from "../proc.ts";
import { docker } from "./docker.ts";
import { withLock } from "./lock.ts";
import { cacheDir } from "../paths.ts";

async function engineAnswers(): Promise<boolean> {
  try {
    return (await docker(["info", "--format", "{{.ServerVersion}}"], { check: false, timeoutMs: 15_000 })).code === 0;
  } catch {
    return false; // no docker client at all
  }
}

const isRoot = () => process.getuid?.() === 0;

async function aptInstall(packages: string[]): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  await run("apt-get", ["update", "-qq"], { env, timeoutMs: 300_000 });
  await run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...packages], { env, timeoutMs: 600_000 });
}

/** Installs Debian packages when a command is missing and we are root on Debian; else explains. */
export async function ensureCommand(command: string, debianPackage: string): Promise<void> {
  const found = await run("sh", ["-c", `command -v ${command}`], { check: false });
  if (found.code === 0) return;
  if (!isRoot() || !existsSync("/etc/debian_version")) {
    throw new Error(`${command} is not installed: install the ${debianPackage} package (or its equivalent) and re-run`);
  }
  await withLock(`apt-${debianPackage}`, () => aptInstall([debianPackage]));
}

export async function ensureEngine(): Promise<void> {
  if (await engineAnswers()) return;
  await withLock("engine", async () => {
    if (await engineAnswers()) return;
    if (!isRoot() || !existsSync("/etc/debian_version")) {
      throw new Error("no Docker engine answers (`docker info` failed): start Docker and re-run the tests");
    }
    await ensureCommand("dockerd", "docker.io");
    const logDir = path.join(cacheDir(), "logs");
    mkdirSync(logDir, { recursive: true });
    const log = openSync(path.join(logDir, "dockerd.log"), "a");
    // Detached: the engine must outlive this test process and serve the next ones.
    spawn("dockerd", [], { detached: true, stdio: ["ignore", log, log] }).unref();
    for (let i = 0; i < 120; i++) {
      if (await engineAnswers()) return;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`dockerd did not answer within 60 s: see ${path.join(logDir, "dockerd.log")}`);
  });
}
