// Hostile input for the admin command, one generator for both places it is thrown at: the
// Python file in a temporary root (test/relay-admin.test.ts) and the real relay over ssh
// (test/relay-admin.docker.test.ts). Names, flags, keys, long and binary lines; for the
// certificate verbs (set-user-ca, set-krl, ca) CA key lists and KRLs, whole, cut, padded and
// forged.
import fc from "fast-check";
import type { ExecutionContext } from "ava";
import type { RunResult } from "../../lib/proc.ts";

export interface HostileCall {
  verb: string;
  words: string[];
  /** the line as the relay sees it in SSH_ORIGINAL_COMMAND */
  line: string;
  /** what goes to its stdin */
  key: string;
}

/**
 * Calls built around `good`, a valid public key line, `existing`, a registered name, and
 * `krl`, base64 of a valid KRL (one line).
 */
export function hostileAdminCall(good: string, existing: string, krl?: string): fc.Arbitrary<HostileCall> {
  const [type, body] = good.split(" ") as [string, string];
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  const hostileWord = fc.oneof(
    fc.string({ maxLength: 80 }), fc.string({ unit: "binary", maxLength: 40 }),
    fc.constantFrom("--replace", "--all", "--devices", "--force", "-x", "$(id)", "`id`", ";", "|", "../..", "A", "é", "a".repeat(64), existing),
  ).map((w) => w.replaceAll("\0", "")); // sshd hands the command over as a C string: it holds no NUL
  const words = fc.tuple(
    fc.constantFrom("add-device", "add-client", "remove", "list", "audit", "drop", "", "set-user-ca", "set-krl", "ca", "render-ca", "render"),
    fc.array(hostileWord, { maxLength: 4 }),
  );
  // What the certificate verbs read: CA key lists, KRLs (base64 of the binary file).
  const krlLike = krl
    ? [
        `${krl}\n${krl}`, `${krl}x`, `${krl.slice(4)}`, `${krl.slice(0, -4)}`, ` ${krl}`, `${krl}\r\r\n`, `${krl.slice(0, 40)}\n${krl.slice(40)}`,
        `${krl.replace(/=+$/, "")}`, krl.replace(/[A-Z]/, "-"), b64(Buffer.concat([Buffer.from(krl, "base64"), Buffer.from("junk")])),
        b64(Buffer.from(krl, "base64").subarray(0, 50)), b64(Buffer.from("SSHKRL\n\0")), b64(Buffer.alloc(2_000_000, 65)),
      ]
    : [];
  const caLike = [`${good}\n${"x"}`, `${good}\n`.repeat(9), `cert-authority ${good}`, `${good}\n\0`, `# ok\n${good}\nssh-dss AAAA`, `${type}-cert-v01@openssh.com ${body}`];
  const hostileKey = fc.oneof(
    fc.string({ maxLength: 200 }), fc.string({ unit: "binary", maxLength: 200 }),
    fc.constantFrom(`${good}\n${good}`, `restrict ${good}`, `${type} ${body}"`, `ssh-rsa ${body}`, `${type} ${body.slice(1)}`, "x".repeat(9000), "", ...caLike, ...krlLike),
    fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 })).map(([a, b]) => `${a}${good}${b}`),
    fc.uint8Array({ maxLength: 300 }).map((b) => b64(Buffer.concat([Buffer.from("SSHKRL\n\0"), b]))),
  );
  return fc.tuple(words, hostileKey).map(([[verb, rest], key]) => ({ verb, words: [verb, ...rest], line: [verb, ...rest].join(" "), key }));
}

/**
 * What is wrong with the relay's answer to a hostile call ([] when nothing): a well-formed
 * call may succeed (a read, an add of the good key, a remove); everything else must be refused
 * with exactly one line on stderr, nothing on stdout, and a non-zero exit.
 */
export function hostileAnswerProblems(c: HostileCall, res: RunResult): string[] {
  if (res.code === 0) {
    const wellFormed =
      ["list", "audit", "remove"].includes(c.verb) || /^(add-device|add-client) [a-z0-9][a-z0-9-]{0,62}( --[a-z]+( \S+)?)*$/.test(c.line.trim()) ||
      // the certificate verbs take no words: a CA key list (none: no CA), a KRL
      /^(set-user-ca|set-krl|ca)$/.test(c.line.trim());
    return wellFormed ? [] : [`${JSON.stringify(c.line)} succeeded`];
  }
  const lines = res.stderr.trim().split("\n");
  return [
    lines.length === 1 ? "" : `${JSON.stringify(c.line)}: ${lines.length} lines on stderr: ${res.stderr.slice(0, 300)}`,
    /^rtunneld-admin: \S.{10,}/.test(lines[0]!) ? "" : `${JSON.stringify(c.line)}: not one clear line: ${JSON.stringify(lines[0])}`,
    res.stdout === "" ? "" : `${JSON.stringify(c.line)}: stdout ${JSON.stringify(res.stdout.slice(0, 100))}`,
  ].filter(Boolean);
}

/**
 * Throws `runs` hostile calls at an admin command, one at a time: each answer must pass
 * hostileAnswerProblems, and a refused call must leave the registry, and the relay's
 * certificate trust (user CA keys, KRL: `state` when given), byte-for-byte as they were.
 * Returns how many were refused (the caller checks the generator hit its target).
 */
export async function throwHostileCalls(
  t: ExecutionContext,
  o: { good: string; existing: string; krl?: string; runs: number; call: (c: HostileCall) => Promise<RunResult>; registry: () => Promise<string>; state?: () => Promise<string> },
): Promise<number> {
  let refused = 0;
  const state = o.state ?? o.registry;
  await fc.assert(
    fc.asyncProperty(hostileAdminCall(o.good, o.existing, o.krl), async (c) => {
      const before = await state();
      const res = await o.call(c);
      const problems = hostileAnswerProblems(c, res);
      if (res.code !== 0) {
        refused++;
        if ((await state()) !== before) problems.push(`${JSON.stringify(c.line)} changed the registry or the certificate trust`);
      }
      t.deepEqual(problems, []);
      return problems.length === 0;
    }),
    { numRuns: o.runs },
  );
  return refused;
}
