// The JSON fixtures of the admin protocol's answers (test/fixtures/protocol/VERB.json: a list
// of answers each), and the shape of an answer, for comparing the real relay's with them.
import { readFileSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "../../lib/paths.ts";
import type { JsonVerb } from "../../provision/relay/protocol.ts";

export function protocolFixtures(verb: JsonVerb): unknown[] {
  return JSON.parse(readFileSync(path.join(repoRoot, "test", "fixtures", "protocol", `${verb}.json`), "utf8")) as unknown[];
}

/**
 * A value's shape: the names of its fields, recursively (arrays of objects by their elements'
 * shapes, deduplicated); values and lists of values are "value" and "list" (the schemas check
 * their types and formats).
 */
export function shapeOf(v: unknown): unknown {
  if (Array.isArray(v)) {
    if (v.every((x) => x === null || typeof x !== "object")) return "list";
    return [...new Set(v.map((x) => JSON.stringify(shapeOf(x))))].sort().map((s) => JSON.parse(s) as unknown);
  }
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, shapeOf((v as Record<string, unknown>)[k])]));
  return "value";
}

/** The shapes of the fixtures' answers (of their list elements, for the list verbs), as JSON strings. */
export function fixtureShapes(verb: JsonVerb): Set<string> {
  const out = new Set<string>();
  for (const answer of protocolFixtures(verb)) {
    for (const item of Array.isArray(answer) ? answer : [answer]) out.add(JSON.stringify(shapeOf(item)));
  }
  return out;
}
