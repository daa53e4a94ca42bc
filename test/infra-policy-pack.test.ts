// The policy pack as `pulumi preview --policy-pack infra/policy` runs it: a subprocess started
// with Pulumi's own runner in the pack's folder (test/infra/policyRunner.ts says what the CLI
// does and where that is written), asked over gRPC for its policies and made to judge
// hand-built resources, so the policies evaluate in the runner's process and not only here.
// The pack's entry is never imported by the tests (constructing the PolicyPack serves it).

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import test from "ava";
import * as p from "../infra/policy/policies.ts";
import {
  analyzeRequest, analyzer, analyzerPb, secret, stackResource, startFakeEngine, startPolicyPack, struct,
  type FakeEngine, type RunningPack,
} from "./infra/policyRunner.ts";

const PACK_DIR = fileURLToPath(new URL("../infra/policy", import.meta.url));
const PROJECT = "rtunnel";
const STACK = "dev";
const CONFIG = JSON.parse(readFileSync(`${PACK_DIR}/config.example.json`, "utf8")) as Record<string, Record<string, unknown>>;

/** PulumiPolicy.yaml's runtime options, which the CLI passes to the runner as `-KEY=VALUE`. */
function runtimeOptions(): Record<string, string> {
  const text = readFileSync(`${PACK_DIR}/PulumiPolicy.yaml`, "utf8");
  if (/^runtime: nodejs\s*$/m.test(text)) return {};
  const block = /^runtime:\n {2}name: nodejs\n {2}options:\n((?: {4}.*\n)+)/m.exec(text.replace(/^\s*#.*\n/gm, ""));
  if (!block) throw new Error("PulumiPolicy.yaml: expected `runtime: nodejs` or a runtime block with options");
  return Object.fromEntries(block[1]!.trim().split("\n").map((l) => l.trim().split(/:\s*/, 2) as [string, string]));
}

/** The environment of a shell that runs `pulumi`: this one, without ava's loader flags. */
function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env["NODE_OPTIONS"];
  return { ...env, ...extra };
}

type Diag = { policy: string; message: string; level: number };
const diagnostics = (r: InstanceType<typeof analyzerPb.AnalyzeResponse>): Diag[] =>
  r.getDiagnosticsList().map((d) => ({ policy: d.getPolicyname(), message: d.getMessage(), level: d.getEnforcementlevel() }));

async function withPack(t: import("ava").ExecutionContext, env: NodeJS.ProcessEnv): Promise<{ pack: RunningPack; engine: FakeEngine }> {
  const engine = await startFakeEngine();
  t.teardown(() => engine.close());
  let pack: RunningPack | undefined;
  try {
    pack = await startPolicyPack({ dir: PACK_DIR, engine: engine.address, runtimeOptions: runtimeOptions(), project: PROJECT, stack: STACK, env });
  } catch (e) {
    t.log(`engine calls: ${JSON.stringify(engine.calls)}`);
    throw e;
  }
  const running = pack;
  t.teardown(async () => {
    if (!t.passed) t.log(running.output(), `engine calls: ${JSON.stringify(engine.calls)}`);
    await running.stop();
  });
  return { pack: running, engine };
}

/** What the CLI does after the pack printed its port, up to the first resource. */
async function configure(pack: RunningPack): Promise<void> {
  const c = analyzer(pack.client);
  await c.configureStack(new analyzerPb.AnalyzerStackConfigureRequest().setProject(PROJECT).setStack(STACK).setDryRun(true));
  const req = new analyzerPb.ConfigureAnalyzerRequest();
  for (const [policy, props] of Object.entries(CONFIG)) {
    req.getPolicyconfigMap().set(policy, new analyzerPb.PolicyConfig().setEnforcementlevel(analyzerPb.EnforcementLevel.MANDATORY).setProperties(struct(props)));
  }
  await c.configure(req);
}

const SG = (fromPort: number) => ({
  description: "relay",
  ingress: [{ protocol: "tcp", fromPort, toPort: fromPort, cidrBlocks: ["0.0.0.0/0"] }],
  egress: [{ protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["0.0.0.0/0"] }],
});

for (const [variant, env] of [
  ["from a plain shell", cliEnv()],
  ["with NODE_OPTIONS=--import tsx set (as the Pulumi program's own loader is)", cliEnv({ NODE_OPTIONS: "--import tsx" })],
] as const) {
  test.serial(`the policy pack loads under Pulumi's own runner ${variant}, lists every policy and judges resources`, async (t) => {
    const { pack } = await withPack(t, env);
    const c = analyzer(pack.client);

    const info = await c.getAnalyzerInfo();
    t.is(info.getName(), "rtunnel-relay");
    t.deepEqual(info.getPoliciesList().map((x) => x.getName()).sort(), p.allPolicies.map((x) => x.name).sort(), "every policy of policies.ts is served");
    t.true(info.getPoliciesList().every((x) => x.getEnforcementlevel() === analyzerPb.EnforcementLevel.MANDATORY));

    await configure(pack);

    const open22 = diagnostics(await c.analyze(analyzeRequest(p.SECURITY_GROUP, "relay-sg", SG(22), STACK, PROJECT)));
    t.deepEqual(open22.map((d) => d.policy), ["relay-ingress-only-remote-port"]);
    t.regex(open22[0]!.message, /relay-sg opens port 22/);
    t.is(open22[0]!.level, analyzerPb.EnforcementLevel.MANDATORY);

    const otherPort = diagnostics(await c.analyze(analyzeRequest(p.SECURITY_GROUP, "relay-sg", SG(443), STACK, PROJECT)));
    t.regex(otherPort[0]?.message ?? "", /opens port 443, not REMOTE_PORT 12345/, "the policy config reached the pack");

    t.deepEqual(diagnostics(await c.analyze(analyzeRequest(p.SECURITY_GROUP, "relay-sg", SG(12345), STACK, PROJECT))), [], "a good group passes");

    const twoRules = new analyzerPb.AnalyzeStackRequest().setResourcesList([
      stackResource(p.SECURITY_GROUP, "relay-sg", SG(12345), STACK, PROJECT),
      stackResource(p.SG_RULE, "extra", { type: "ingress", protocol: "tcp", fromPort: 22, toPort: 22, securityGroupId: "sg-1" }, STACK, PROJECT),
    ]);
    const stack = diagnostics(await c.analyzeStack(twoRules));
    t.true(stack.some((d) => d.policy === "relay-single-ingress-rule" && /declares 2 ingress rules/.test(d.message)), JSON.stringify(stack));
  });
}

test.serial("under Pulumi's runner, a private key in a parameter's write-only value (a secret on the wire) must be a SecureString under a key of its own", async (t) => {
  const { pack } = await withPack(t, cliEnv());
  const c = analyzer(pack.client);
  await configure(pack);
  const key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
  const plain = diagnostics(await c.analyze(analyzeRequest(p.SSM_PARAMETER, "host-key", { name: "/x", type: "String", valueWo: secret(key), valueWoVersion: 1 }, STACK, PROJECT)));
  t.true(plain.some((d) => d.policy === "private-keys-in-securestring" && /is String, not SecureString/.test(d.message)), JSON.stringify(plain));
  const awsSsm = diagnostics(await c.analyze(analyzeRequest(p.SSM_PARAMETER, "host-key", { name: "/x", type: "SecureString", valueWo: secret(key), valueWoVersion: 1 }, STACK, PROJECT)));
  t.deepEqual(awsSsm.map((d) => d.policy), ["private-keys-under-own-kms-key"]);
  const own = { name: "/x", type: "SecureString", valueWo: secret(key), valueWoVersion: 1, keyId: "arn:aws:kms:us-east-1:123456789012:key/0123abcd-4567-89ef-0123-456789abcdef" };
  t.deepEqual(diagnostics(await c.analyze(analyzeRequest(p.SSM_PARAMETER, "host-key", own, STACK, PROJECT))), []);
});
