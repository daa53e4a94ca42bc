// The real Pulumi program under mocks: wiring, secrets, config validation and the policy
// pack against what the program registers. No CLI, no AWS.

import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { awsManagedSsmKeyPolicy, canReadSecureString, identityDecision, kmsDecision, managedPolicy, type Principal } from "./infra/iamEval.ts";
import { publicKeyLine } from "./infra/keys.ts";
import {
  ACCOUNT, DEPLOYER_ROLE_ARN, EIP_ADDRESS, INSTANCE_ID, REGION, VOLUME_ID, installMocks, isSecret, privateKeyTexts, publicKeyLines,
  resources, setRelayConfig, settled, valueOf, type RecordedResource,
} from "./infra/mocks.ts";
import { policyResource, resourceArgs, stackArgs } from "./infra/policyArgs.ts";

await installMocks();
const { default: relayStack } = await import("../infra/index.ts");
const policies = await import("../infra/policy/policies.ts");

const publicKey = publicKeyLine;

const ADMIN_KEY = publicKey();
const BREAK_GLASS = `arn:aws:iam::${ACCOUNT}:role/break-glass`;
const GOOD = {
  remotePort: "4022",
  allowedCidrs: JSON.stringify(["203.0.113.0/24", "2001:db8::/32"]),
  adminPublicKeys: JSON.stringify([ADMIN_KEY]),
  keyAdminArns: JSON.stringify([BREAK_GLASS]),
};

type Outputs = ReturnType<typeof relayStack>;
let outputs: { [K in keyof Outputs]: Outputs[K] extends { apply: unknown } ? unknown : never };

test.before(async () => {
  setRelayConfig(GOOD);
  const out = relayStack();
  outputs = {
    relayHost: await valueOf(out.relayHost),
    relayPort: await valueOf(out.relayPort),
    relayHostKey: await valueOf(out.relayHostKey),
    relayHostKeyFingerprint: await valueOf(out.relayHostKeyFingerprint),
    instanceId: await valueOf(out.instanceId),
  };
  await settled();
});

const ofType = (type: string) => resources.filter((r) => r.type === type);
function only(type: string): RecordedResource {
  const found = ofType(type);
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}: ${found.map((r) => r.name).join(", ")}`);
  return found[0]!;
}
const instance = () => only("aws:ec2/instance:Instance");
const userData = () => String(instance().inputs["userData"]);

test.serial("the relay opens no port but remotePort, over TCP, from the configured CIDRs", (t) => {
  const sgs = ofType("aws:ec2/securityGroup:SecurityGroup");
  t.is(sgs.length, 1, "one security group");
  const ingress = sgs[0]!.inputs["ingress"] as Record<string, unknown>[];
  t.is(ingress.length, 1, `${sgs[0]!.name} has exactly one ingress rule`);
  t.like(ingress[0], { protocol: "tcp", fromPort: 4022, toPort: 4022, cidrBlocks: ["203.0.113.0/24"], ipv6CidrBlocks: ["2001:db8::/32"] });
  const separateRules = resources.filter((r) => /securityGroupRule|securityGroupIngressRule/.test(r.type));
  t.deepEqual(separateRules.map((r) => r.name), [], "no separate rule resources add ingress");
  t.false(JSON.stringify(ingress).includes(":22,"), "no port 22");
});

test.serial("egress is explicit (HTTPS only)", (t) => {
  const egress = only("aws:ec2/securityGroup:SecurityGroup").inputs["egress"] as Record<string, unknown>[];
  t.true(egress.length >= 1);
  t.like(egress[0], { protocol: "tcp", fromPort: 443, toPort: 443 });
});

test.serial("the instance requires IMDSv2, encrypts its root volume and boots arm64 AL2023 from the SSM parameter", (t) => {
  const i = instance().inputs;
  t.like(i, { metadataOptions: { httpTokens: "required", httpPutResponseHopLimit: 1 }, rootBlockDevice: { encrypted: true } });
  t.is(i["instanceType"], "t4g.nano");
  t.is(i["ami"], "ami-0123456789abcdef0");
  t.like(i, { creditSpecification: { cpuCredits: "standard" } });
  t.is(i["userDataReplaceOnChange"], true);
});

test.serial("the role carries exactly the two managed policies and one inline policy for its host key", (t) => {
  const attached = ofType("aws:iam/rolePolicyAttachment:RolePolicyAttachment").map((r) => r.inputs["policyArn"]).sort();
  t.deepEqual(attached, [
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
  ]);
  t.is(only("aws:iam/role:Role").inputs["managedPolicyArns"], undefined);
  t.is(only("aws:iam/rolePolicy:RolePolicy").inputs["role"], only("aws:iam/role:Role").state["name"]);
  t.like(only("aws:ssm/parameter:Parameter").inputs, { type: "SecureString" });
});

/** The instance role as AWS sees it: its managed policies (AWS's documents) and its inline ones. */
function instanceRole(): Principal {
  const role = only("aws:iam/role:Role");
  const managed = ofType("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    .filter((a) => a.inputs["role"] === role.state["name"])
    .map((a) => managedPolicy(String(a.inputs["policyArn"])));
  const inline = ofType("aws:iam/rolePolicy:RolePolicy").filter((p) => p.inputs["role"] === role.state["name"]).map((p) => String(p.inputs["policy"]));
  return { arn: String(role.state["arn"]), identity: [...managed, ...inline] };
}

/** The key that encrypts the host key parameter, and its policy (aws/ssm's when none is named). */
function hostKeyEncryption(): { keyArn: string; keyPolicy: string | object } {
  const keyId = only("aws:ssm/parameter:Parameter").inputs["keyId"];
  if (keyId === undefined || keyId === "alias/aws/ssm") {
    return { keyArn: `arn:aws:kms:${REGION}:${ACCOUNT}:key/aws-ssm-managed`, keyPolicy: awsManagedSsmKeyPolicy(ACCOUNT, REGION) };
  }
  const key = ofType("aws:kms/key:Key").find((k) => k.state["arn"] === keyId || k.state["keyId"] === keyId);
  if (!key) throw new Error(`the host key parameter names KMS key ${String(keyId)}, which the program does not create`);
  return { keyArn: String(key.state["arn"]), keyPolicy: String(key.inputs["policy"]) };
}

const OTHER_PARAMETERS = [
  `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/prod/db/password`,
  `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/rtunnel/rtunnel/other-stack/relay/ssh_host_ed25519_key`,
  `arn:aws:ssm:eu-west-1:${ACCOUNT}:parameter/x`,
];

test.serial("the instance role reads its host key parameter and no other: SSM core's GetParameter(s) on * is denied elsewhere", (t) => {
  const role = instanceRole();
  const hostKey = String(only("aws:ssm/parameter:Parameter").state["arn"]);
  t.is(identityDecision(role.identity, { action: "ssm:GetParameter", resource: hostKey }), "allow");
  for (const action of ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"]) {
    for (const resource of OTHER_PARAMETERS) t.is(identityDecision(role.identity, { action, resource }), "deny", `${action} on ${resource}`);
  }
  t.is(identityDecision(role.identity, { action: "ssm:UpdateInstanceInformation", resource: "*" }), "allow", "the SSM agent still registers");
  t.is(identityDecision(role.identity, { action: "ssmmessages:OpenDataChannel", resource: "*" }), "allow", "Session Manager still works");
});

test.serial("only the instance role and the deployer can read the host key, not another principal of the account, not even an administrator", (t) => {
  const parameterArn = String(only("aws:ssm/parameter:Parameter").state["arn"]);
  const enc = { parameterArn, ...hostKeyEncryption(), region: REGION, account: ACCOUNT };
  const admin = { identity: [managedPolicy("arn:aws:iam::aws:policy/AdministratorAccess")] };
  t.true(canReadSecureString(instanceRole(), enc), "the instance role");
  t.true(canReadSecureString({ arn: DEPLOYER_ROLE_ARN, ...admin }, enc), "the deployer (who holds the key in the Pulumi state anyway)");
  t.false(canReadSecureString({ arn: `arn:aws:iam::${ACCOUNT}:role/ops`, identity: [managedPolicy("arn:aws:iam::aws:policy/AmazonSSMReadOnlyAccess")] }, enc), "an operator with SSM read-only access");
  t.false(canReadSecureString({ arn: `arn:aws:iam::${ACCOUNT}:role/admin`, ...admin }, enc), "an account administrator (IAM cannot grant what the key policy does not)");
  t.false(canReadSecureString({ arn: BREAK_GLASS, ...admin }, enc), "a key administrator");
  t.false(canReadSecureString({ arn: `arn:aws:iam::${ACCOUNT}:root`, ...admin }, enc), "the account's root principal");
});

test.serial("the host key's KMS key: administrators manage it but cannot use it, decrypting is only through SSM, deletion waits 7 days", (t) => {
  const keys = ofType("aws:kms/key:Key");
  t.is(keys.length, 1, "one customer-managed key");
  const key = keys[0]!;
  t.like(key.inputs, { deletionWindowInDays: 7 });
  const { keyArn, keyPolicy } = hostKeyEncryption();
  const admin = [managedPolicy("arn:aws:iam::aws:policy/AdministratorAccess")];
  for (const principal of [DEPLOYER_ROLE_ARN, BREAK_GLASS]) {
    for (const action of ["kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:DescribeKey", "kms:TagResource"]) {
      t.is(kmsDecision(keyPolicy, { principal, identity: admin, action, resource: keyArn }), "allow", `${principal} ${action}`);
    }
    for (const action of ["kms:CreateGrant", "kms:ReEncryptFrom", "kms:Decrypt"]) {
      t.is(kmsDecision(keyPolicy, { principal, identity: admin, action, resource: keyArn }), "implicit", `${principal} may not ${action} outside SSM`);
    }
  }
  const role = instanceRole();
  t.is(kmsDecision(keyPolicy, { principal: role.arn, identity: role.identity, action: "kms:Decrypt", resource: keyArn }), "implicit", "not even the instance role decrypts outside SSM");
  const otherParameter = { "kms:ViaService": `ssm.${REGION}.amazonaws.com`, "kms:EncryptionContext:PARAMETER_ARN": OTHER_PARAMETERS[0]! };
  t.is(kmsDecision(keyPolicy, { principal: role.arn, identity: role.identity, action: "kms:Decrypt", resource: keyArn, context: otherParameter }), "implicit", "nor another parameter encrypted under this key");
});

test.serial("the host key reaches SSM as a write-only value, a Pulumi secret, versioned by its public half", (t) => {
  const param = only("aws:ssm/parameter:Parameter");
  t.is(param.inputs["value"], undefined, "no readable value");
  t.regex(String(param.inputs["valueWo"]), /^-----BEGIN OPENSSH PRIVATE KEY-----/);
  t.true(isSecret(param.rawInputs["valueWo"]), "a secret on the wire");
  t.true(Number.isInteger(param.inputs["valueWoVersion"]) && Number(param.inputs["valueWoVersion"]) >= 0);
});

test.serial("the ECR repository and the host key parameter carry the project and the stack, so two stacks never share them", (t) => {
  t.is(only("aws:ecr/repository:Repository").inputs["name"], "rtunnel/rtunnel/test/relay-rtunneld");
  t.is(only("aws:ssm/parameter:Parameter").inputs["name"], "/rtunnel/rtunnel/test/relay/ssh_host_ed25519_key");
});

test.serial("an upgrade keeps what holds the relay's identity and state under the names it had (so nothing is deleted and re-created)", (t) => {
  const kept: [string, string][] = [
    ["tls:index/privateKey:PrivateKey", "relay-host-key"],
    ["aws:ebs/volume:Volume", "relay-data"],
    ["aws:ec2/eip:Eip", "relay-eip"],
    ["aws:ecr/repository:Repository", "relay-repo"],
    ["aws:ssm/parameter:Parameter", "relay-host-key"],
    ["aws:iam/role:Role", "relay-role"],
  ];
  for (const [type, name] of kept) t.true(resources.some((r) => r.type === type && r.name === name), `${type} ${name}`);
  t.deepEqual(only("tls:index/privateKey:PrivateKey").inputs, { algorithm: "ED25519" }, "the host key's inputs are unchanged: it is not regenerated");
});

test.serial("the Elastic IP is associated with the instance and is the relay host", (t) => {
  const eip = only("aws:ec2/eip:Eip");
  t.like(only("aws:ec2/eipAssociation:EipAssociation").inputs, { instanceId: INSTANCE_ID, allocationId: eip.state["allocationId"] });
  t.is(outputs.relayHost, EIP_ADDRESS);
  t.is(outputs.instanceId, INSTANCE_ID);
  t.is(outputs.relayPort, 4022);
});

test.serial("state lives on an encrypted data volume attached to the instance in its zone", (t) => {
  const vol = only("aws:ebs/volume:Volume");
  t.like(vol.inputs, { encrypted: true, type: "gp3", availabilityZone: "us-east-1a" });
  t.like(only("aws:ec2/volumeAttachment:VolumeAttachment").inputs, { instanceId: INSTANCE_ID, volumeId: VOLUME_ID, stopInstanceBeforeDetaching: true });
  t.is(instance().inputs["availabilityZone"], "us-east-1a");
  t.true(userData().includes(`Amazon_Elastic_Block_Store_${VOLUME_ID.replace("-", "")}`));
});

test.serial("the image is built for linux/arm64, pushed to the ECR repository, and the host runs it by digest", (t) => {
  const image = only("docker:index/image:Image");
  const repo = only("aws:ecr/repository:Repository");
  t.like(image.inputs, { build: { platform: "linux/arm64" }, registry: { server: repo.state["repositoryUrl"], username: "AWS" } });
  t.regex(String((image.inputs["build"] as Record<string, unknown>)["context"]), /images\/rtunneld$/);
  const digest = String(image.state["repoDigest"]);
  t.regex(digest, /@sha256:[0-9a-f]{64}$/);
  t.true(userData().includes(`exec docker run --name rtunneld -p 4022:2222`));
  t.true(userData().includes(` ${digest}\n`), "the run script ends with the image digest");
  t.true(userData().includes(ADMIN_KEY), "the admin key is installed");
});

test.serial("no private key material in userData, tags or plain outputs", (t) => {
  t.true(privateKeyTexts.length >= 2, "the mock generated a key");
  const needles = [...privateKeyTexts.flatMap((k) => k.split("\n").filter((l) => l.length > 20 && !l.startsWith("-----"))), "PRIVATE KEY"];
  const haystacks: [string, string][] = [
    ["userData", userData()],
    ["outputs", JSON.stringify(outputs)],
    ...resources.map((r): [string, string] => [`${r.name} tags`, JSON.stringify([r.inputs["tags"], r.inputs["tagsAll"]])]),
  ];
  for (const [where, text] of haystacks) {
    for (const n of needles) t.false(text.includes(n), `${where} contains private key material`);
  }
  const holders = resources.filter((r) => needles.some((n) => JSON.stringify(r.inputs).includes(n))).map((r) => r.type).sort();
  t.deepEqual(holders, ["aws:ssm/parameter:Parameter"], "only the SecureString parameter receives the private key");
  t.true(isSecret(only("aws:ssm/parameter:Parameter").rawInputs["valueWo"]), "and it arrives there as a Pulumi secret");
});

test.serial("the host key output is the public half and its fingerprint matches ssh-keygen's", (t) => {
  t.is(outputs.relayHostKey, publicKeyLines[0]!.trim());
  t.regex(String(outputs.relayHostKey), /^ssh-ed25519 [A-Za-z0-9+/]+=*$/);
  const dir = mkdtempSync(join(tmpdir(), "rtunnel-infra-"));
  writeFileSync(join(dir, "host.pub"), `${String(outputs.relayHostKey)}\n`);
  const keygen = execFileSync("ssh-keygen", ["-lf", join(dir, "host.pub")], { encoding: "utf8" });
  t.is(outputs.relayHostKeyFingerprint, keygen.split(" ")[1]);
});

test.serial("every child is named after the component", (t) => {
  const children = resources.filter((r) => r.type !== "rtunnel:aws:Relay");
  t.is(ofType("rtunnel:aws:Relay").length, 1);
  for (const r of children) t.true(r.name.startsWith("relay-"), `${r.type} ${r.name}`);
});

test.serial("the rendered user-data passes shellcheck", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "rtunnel-infra-"));
  const file = join(dir, "user-data.sh");
  writeFileSync(file, userData());
  t.notThrows(() => execFileSync("shellcheck", ["--shell=bash", file], { encoding: "utf8" }));
});

test.serial("the resources the program registers pass every policy", async (t) => {
  const config = { remotePort: 4022 };
  for (const policy of policies.resourcePolicies) {
    for (const r of resources) {
      t.deepEqual(await policies.violationsOf(policy, resourceArgs(r.type, r.inputs, r.name, config)), [], `${policy.name} on ${r.name}`);
    }
  }
  const stack = stackArgs(resources.map((r) => policyResource(r.type, r.inputs, r.name)), config);
  for (const policy of policies.stackPolicies) t.deepEqual(await policies.stackViolationsOf(policy, stack), [], policy.name);
});

const BAD: [string, Record<string, string>, RegExp, ErrorConstructor][] = [
  ["a port above 65535", { remotePort: "70000" }, /^rtunnel:remotePort must be 1-65535 and not 22 \(got 70000\)/, RangeError],
  ["port 22", { remotePort: "22" }, /^rtunnel:remotePort .*\(got 22\)/, RangeError],
  ["port 0", { remotePort: "0" }, /^rtunnel:remotePort .*\(got 0\)/, RangeError],
  ["a port that is not a number", { remotePort: "ssh" }, /^rtunnel:remotePort must be a whole number/, TypeError],
  ["missing adminPublicKeys", { adminPublicKeys: "" }, /^rtunnel:adminPublicKeys is required/, TypeError],
  ["malformed adminPublicKeys", { adminPublicKeys: JSON.stringify(["ssh-ed25519 not-base64!"]) }, /^rtunnel:adminPublicKeys\[0\] is not an OpenSSH public key/, TypeError],
  ["a private key as admin key", { adminPublicKeys: JSON.stringify(["-----BEGIN OPENSSH PRIVATE KEY-----"]) }, /^rtunnel:adminPublicKeys\[0\] is a PRIVATE key/, TypeError],
  ["adminPublicKeys that is not a list", { adminPublicKeys: "{\"a\":1}" }, /^rtunnel:adminPublicKeys/, TypeError],
  ["a bad CIDR", { allowedCidrs: JSON.stringify(["10.0.0.300/24"]) }, /^rtunnel:allowedCidrs has "10\.0\.0\.300\/24", which is not a CIDR/, TypeError],
  ["a CIDR with host bits", { allowedCidrs: JSON.stringify(["10.0.0.1/24"]) }, /^rtunnel:allowedCidrs .*did you mean "10\.0\.0\.0\/24"/, RangeError],
  ["a bad IPv6 CIDR", { allowedCidrs: JSON.stringify(["2001:db8::/129"]) }, /^rtunnel:allowedCidrs .*prefix must be 0-128/, RangeError],
  ["an x86 instance type", { instanceType: "t3.nano" }, /^rtunnel:instanceType must be an arm64/, RangeError],
];

for (const [what, change, message, type] of BAD) {
  test.serial(`the program stops before any resource on ${what}, naming the key`, (t) => {
    const before = resources.length;
    setRelayConfig({ ...GOOD, ...change });
    t.throws(() => relayStack(), { instanceOf: type, message });
    t.is(resources.length, before, "no resource was registered");
  });
}
