// Every container, network and volume a test makes belongs to a Scope: unique names per run,
// labels that say who owns it, and teardown that happens when the test ends, passes or not.
// A watchdog process removes what a killed test process (ava timeout, Ctrl-C) left behind.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { ExecutionContext } from "ava";
import { docker, exec, inspect, type RunOptions, type RunResult } from "./docker.ts";
import { alive } from "./lock.ts";

export const TEST_LABEL = "rtunnel.test";
const PID_LABEL = "rtunnel.test.pid";
const SCOPE_LABEL = "rtunnel.test.scope";

let watchdogStarted = false;

/** When this process dies, however it dies, remove everything labelled with its pid. */
function startWatchdog(): void {
  if (watchdogStarted) return;
  watchdogStarted = true;
  const filter = `label=${PID_LABEL}=${process.pid}`;
  const script = [
    `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done`,
    `docker ps -aq --filter ${filter} | xargs -r docker rm -f -v >/dev/null 2>&1`,
    `docker network ls -q --filter ${filter} | xargs -r docker network rm >/dev/null 2>&1`,
    `docker volume ls -q --filter ${filter} | xargs -r docker volume rm -f >/dev/null 2>&1`,
  ].join("; ");
  spawn("sh", ["-c", script], { detached: true, stdio: "ignore" }).unref();
}

export class Scope {
  readonly id: string;
  private disposed = false;

  constructor(readonly title = "test") {
    this.id = randomBytes(4).toString("hex");
    startWatchdog();
  }

  /** A name unique to this scope: `rt-PREFIX-ID`. */
  name(prefix: string): string {
    return `rt-${prefix}-${this.id}`;
  }

  /** Labels to pass to every `docker run|network create|volume create` of this scope. */
  get flags(): string[] {
    return ["--label", TEST_LABEL, "--label", `${PID_LABEL}=${process.pid}`, "--label", `${SCOPE_LABEL}=${this.id}`];
  }

  /** `docker run -d` with this scope's labels; returns the container name (pass `--name`) or id. */
  async run(args: readonly string[]): Promise<string> {
    const i = args.indexOf("--name");
    const out = await docker(["run", "-d", ...this.flags, ...args]);
    return i >= 0 ? args[i + 1]! : out.stdout.trim();
  }

  async network(prefix: string, extra: readonly string[] = []): Promise<string> {
    const name = this.name(prefix);
    await docker(["network", "create", ...this.flags, ...extra, name]);
    return name;
  }

  async volume(prefix: string): Promise<string> {
    const name = this.name(prefix);
    await docker(["volume", "create", ...this.flags, name]);
    return name;
  }

  exec(container: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return exec(container, argv, opts);
  }

  /** The container's address on a network of this scope. */
  ip(container: string, network: string): Promise<string> {
    return inspect(container, `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`);
  }

  async containers(): Promise<string[]> {
    const out = await docker(["ps", "-a", "--filter", `label=${SCOPE_LABEL}=${this.id}`, "--format", "{{.Names}}"]);
    return out.stdout.split("\n").filter(Boolean);
  }

  /** Container logs, for a failed test's output. */
  async logs(): Promise<string> {
    const parts: string[] = [];
    for (const c of await this.containers()) {
      const l = await docker(["logs", "--tail", "60", c], { check: false });
      parts.push(`--- ${c} ---\n${l.stdout}${l.stderr}`);
    }
    return parts.join("\n");
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const filter = `label=${SCOPE_LABEL}=${this.id}`;
    const ids = async (kind: string[]) =>
      (await docker([...kind, "-q", "--filter", filter], { check: false })).stdout.split("\n").filter(Boolean);
    const containers = await ids(["ps", "-a"]);
    if (containers.length) await docker(["rm", "-f", "-v", ...containers], { check: false });
    const networks = await ids(["network", "ls"]);
    if (networks.length) await docker(["network", "rm", ...networks], { check: false });
    const volumes = await ids(["volume", "ls"]);
    if (volumes.length) await docker(["volume", "rm", "-f", ...volumes], { check: false });
  }
}

/** A scope torn down when the test ends; its containers' logs are shown when the test failed. */
export function useScope(t: ExecutionContext): Scope {
  const scope = new Scope(t.title);
  t.teardown(async () => {
    if (!t.passed) t.log(await scope.logs().catch((e: unknown) => `(no logs: ${String(e)})`));
    await scope.dispose();
  });
  return scope;
}

/** Resources labelled rtunnel.test whose owning process is gone (or all of them, with `all`). */
export async function leftovers({ all = false } = {}): Promise<{ containers: string[]; networks: string[]; volumes: string[] }> {
  const list = async (kind: string[], id: string) => {
    const format = `{{${id}}} {{.Label "${PID_LABEL}"}}`;
    const out = await docker([...kind, "--filter", `label=${TEST_LABEL}`, "--format", format], { check: false });
    return out.stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => line.split(" "))
      .filter(([, pid]) => all || !alive(Number(pid)))
      .map(([ref]) => ref!);
  };
  return {
    containers: await list(["ps", "-a"], ".ID"),
    networks: await list(["network", "ls"], ".ID"),
    volumes: await list(["volume", "ls"], ".Name"),
  };
}

/**
 * Removes what test runs left behind: resources whose owning process is gone (a run in
 * progress elsewhere on this machine keeps its own), or all with `all`.
 */
export async function sweepAll({ all = false } = {}): Promise<number> {
  const { containers, networks, volumes } = await leftovers({ all });
  if (containers.length) await docker(["rm", "-f", "-v", ...containers], { check: false });
  if (networks.length) await docker(["network", "rm", ...networks], { check: false });
  if (volumes.length) await docker(["volume", "rm", "-f", ...volumes], { check: false });
  return containers.length + networks.length + volumes.length;
}
