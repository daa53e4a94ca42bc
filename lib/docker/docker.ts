// The one way the kit talks to a local Docker engine: the real `docker` CLI, no SDK, so what
// a test, the bench or the demo does is what a person could type.
import { run, type RunOptions, type RunResult } from "../proc.ts";

export function docker(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run("docker", args, opts);
}

/** `docker exec -i CONTAINER argv...` */
export function exec(container: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return docker(["exec", "-i", container, ...argv], opts);
}

/** One value from `docker inspect --format`. */
export async function inspect(target: string, format: string): Promise<string> {
  return (await docker(["inspect", "--format", format, target])).stdout.trim();
}
