import { rm } from "node:fs/promises";
import type { ExecutionContext } from "ava";
import { Scope } from "../../lib/fixtures/scope.ts";

/** A scope torn down when the test ends; its containers' logs are shown when the test failed. */
export function useScope(t: ExecutionContext): Scope {
  const scope = new Scope(t.title);
  t.teardown(async () => {
    if (!t.passed) t.log(await scope.logs().catch((e: unknown) => `(no logs: ${String(e)})`));
    await scope.dispose();
  });
  return scope;
}

/**
 * The hooks of a file whose tests share one world made in `test.before` (a scope, temp
 * directories): its containers' logs after a failed test, and everything removed at the end.
 */
export function sharedWorldHooks(test: { afterEach: { always: (f: (t: ExecutionContext) => Promise<void>) => void }; after: { always: (f: () => Promise<void>) => void } }, world: () => { scope: Scope; dirs: string[] } | undefined): void {
  test.afterEach.always(async (t) => {
    const w = world();
    if (!t.passed && w) t.log(await w.scope.logs().catch((e: unknown) => `(no logs: ${String(e)})`));
  });
  test.after.always(async () => {
    const w = world();
    await w?.scope.dispose();
    for (const dir of w?.dirs ?? []) await rm(dir, { recursive: true, force: true });
  });
}
