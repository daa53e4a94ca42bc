// The admin protocol's schemas (provision/relay/protocol.ts) against the JSON fixtures of each
// verb's answer: every fixture is an answer the CLI takes, and answers that are not are
// refused with the field named. The Docker suite holds the real relay to the same fixtures.
import test from "ava";
import { ANSWERS, type JsonVerb } from "../provision/relay/protocol.ts";
import { protocolFixtures } from "./protocol/fixtures.ts";

for (const verb of Object.keys(ANSWERS) as JsonVerb[]) {
  test(`every fixture of ${verb}'s answer passes its schema`, (t) => {
    const answers = protocolFixtures(verb);
    t.true(answers.length > 0);
    for (const a of answers) {
      const r = ANSWERS[verb].safeParse(a);
      t.true(r.success, `${JSON.stringify(a).slice(0, 120)}: ${r.success ? "" : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    }
  });
}

test("answers the CLI does not understand are refused: a missing field, an unknown kind or verb, a bad fingerprint", (t) => {
  const [device] = protocolFixtures("add-device") as Record<string, unknown>[];
  const [list] = protocolFixtures("list") as Record<string, unknown>[][];
  const [audit] = protocolFixtures("audit") as Record<string, unknown>[][];
  const bad: [JsonVerb, unknown][] = [
    ["add-device", { ...device, port: undefined }],
    ["add-device", { ...device, fingerprint: "MD5:aa" }],
    ["list", [{ ...list![0], kind: "gateway" }]],
    ["list", [{ ...list![2], devices: undefined }]],
    ["audit", [{ ...audit![0], verb: "drop-table" }]],
    ["audit", [{ ...audit![3], key: "root:x" }]],
    ["remove", { sessionsEnded: true }],
  ];
  for (const [verb, answer] of bad) t.false(ANSWERS[verb].safeParse(answer).success, `${verb}: ${JSON.stringify(answer).slice(0, 100)}`);
});
