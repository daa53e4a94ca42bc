// Assertions the CLI's tests share.
import type { ExecutionContext } from "ava";

/** A refusal the way the CLI promises one: a single `rtunnel: ` line matching `pattern`, no stack trace. */
export function oneLine(t: ExecutionContext, stderr: string, pattern: RegExp) {
  const lines = stderr.trim().split("\n").filter((l) => l.startsWith("rtunnel: "));
  t.is(lines.length, 1, stderr);
  t.regex(lines[0] ?? "", pattern);
  t.notRegex(stderr, /\n\s+at /, "no stack trace");
}
