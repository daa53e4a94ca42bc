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
