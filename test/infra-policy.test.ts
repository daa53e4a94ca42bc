// Every policy of the pack on hand-built good and bad resources. (The real program's
// resources are checked against every policy in infra.test.ts, under mocks.)

import type { ResourceValidationPolicy } from "@pulumi/policy";
import test from "ava";
import { hostKeyKeyPolicy, hostKeyReadPolicy, RELAY_MANAGED_POLICY_ARNS } from "../infra/iam.ts";
import * as p from "../infra/policy/policies.ts";
import { policyResource, resourceArgs, stackArgs } from "./infra/policyArgs.ts";

const SG = (ingress: unknown[], egress: unknown[] = [{ protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["0.0.0.0/0"] }]) =>
  ({ ingress, egress });
const ONE = { protocol: "tcp", fromPort: 4022, toPort: 4022, cidrBlocks: ["0.0.0.0/0"] };
const GOOD_INSTANCE = { metadataOptions: { httpTokens: "required" }, rootBlockDevice: { encrypted: true }, userData: "#!/bin/bash\necho hi\n" };

type Case = [string, ResourceValidationPolicy, string, Record<string, unknown>, RegExp | null, object?];

const KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----\n";
const KMS_ARN = "arn:aws:kms:us-east-1:123456789012:key/0123abcd-4567-89ef-0123-456789abcdef";
const PARAM_ARN = "arn:aws:ssm:us-east-1:123456789012:parameter/rtunnel/rtunnel/dev/relay/ssh_host_ed25519_key";
const NAMED_KEY_POLICY = hostKeyKeyPolicy({ instanceRoleArn: "arn:aws:iam::123456789012:role/relay-role", deployerArn: "arn:aws:iam::123456789012:role/deployer", adminArns: [], parameterArn: PARAM_ARN });
const keyPolicy = (Principal: unknown, Action: string | string[]) => JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal, Action, Resource: "*" }] });

const CASES: Case[] = [
  ["one TCP ingress on REMOTE_PORT", p.relayIngressOnlyRemotePort, p.SECURITY_GROUP, SG([ONE]), null, { remotePort: 4022 }],
  ["one TCP ingress, no configured port", p.relayIngressOnlyRemotePort, p.SECURITY_GROUP, SG([ONE]), null],
  ["two ingress rules", p.relayIngressOnlyRemotePort, p.SECURITY_GROUP, SG([ONE, { ...ONE, fromPort: 80, toPort: 80 }]), /has 2 ingress rules/],
  ["no ingress rule", p.relayIngressOnlyRemotePort, p.SECURITY_GROUP, SG([]), /has 0 ingress rules/],
  ["ingress on port 22", p.relayIngressOnlyRemotePort, p.SECURITY_GROUP, SG([{ ...ONE, fromPort: 22, toPort: 22 }]), /opens port 22/],
  ["ingress on all protocols", p.relayIngressOnlyRemotePort, p.SECURITY_GROUP, SG([{ protocol: "-1", fromPort: 0, toPort: 0 }]), /must be one TCP port/],
  ["ingress on a port range", p.relayIngressOnlyRemotePort, p.SECURITY_GROUP, SG([{ ...ONE, fromPort: 4000, toPort: 5000 }]), /must be one TCP port/],
  ["ingress on a port other than REMOTE_PORT", p.relayIngressOnlyRemotePort, p.SECURITY_GROUP, SG([{ ...ONE, fromPort: 443, toPort: 443 }]), /not REMOTE_PORT 4022/, { remotePort: 4022 }],
  ["explicit egress", p.securityGroupExplicitEgress, p.SECURITY_GROUP, SG([ONE]), null],
  ["no egress", p.securityGroupExplicitEgress, p.SECURITY_GROUP, SG([ONE], []), /has no egress rule/],
  ["IMDSv2 required", p.instanceImdsv2Required, p.INSTANCE, GOOD_INSTANCE, null],
  ["IMDSv1 allowed", p.instanceImdsv2Required, p.INSTANCE, { ...GOOD_INSTANCE, metadataOptions: { httpTokens: "optional" } }, /httpTokens to "required"/],
  ["no metadata options", p.instanceImdsv2Required, p.INSTANCE, { rootBlockDevice: { encrypted: true } }, /IMDSv2/],
  ["encrypted root volume", p.volumesEncrypted, p.INSTANCE, GOOD_INSTANCE, null],
  ["unencrypted root volume", p.volumesEncrypted, p.INSTANCE, { ...GOOD_INSTANCE, rootBlockDevice: {} }, /encrypt its root volume/],
  ["unencrypted extra block device", p.volumesEncrypted, p.INSTANCE, { ...GOOD_INSTANCE, ebsBlockDevices: [{ deviceName: "/dev/sdg" }] }, /\/dev\/sdg is not encrypted/],
  ["encrypted EBS volume", p.volumesEncrypted, p.EBS_VOLUME, { encrypted: true, size: 1 }, null],
  ["unencrypted EBS volume", p.volumesEncrypted, p.EBS_VOLUME, { size: 1 }, /must be encrypted/],
  ["user-data without keys", p.noSecretsInUserData, p.INSTANCE, GOOD_INSTANCE, null],
  ["user-data with a private key", p.noSecretsInUserData, p.INSTANCE, { ...GOOD_INSTANCE, userData: "cat <<EOF\n-----BEGIN OPENSSH PRIVATE KEY-----\n" }, /private key material in its user-data/],
  ["base64 user-data with a private key", p.noSecretsInUserData, p.INSTANCE, { ...GOOD_INSTANCE, userData: undefined, userDataBase64: Buffer.from("-----BEGIN RSA PRIVATE KEY-----").toString("base64") }, /private key material/],
  ["private key in a SecureString", p.privateKeysInSecureStrings, p.SSM_PARAMETER, { type: "SecureString", value: "-----BEGIN OPENSSH PRIVATE KEY-----" }, null],
  ["plain String parameter without a key", p.privateKeysInSecureStrings, p.SSM_PARAMETER, { type: "String", value: "ami-123" }, null],
  ["private key in a String parameter", p.privateKeysInSecureStrings, p.SSM_PARAMETER, { type: "String", value: "-----BEGIN OPENSSH PRIVATE KEY-----" }, /is String, not SecureString/],
  ["private key in insecureValue", p.privateKeysInSecureStrings, p.SSM_PARAMETER, { type: "SecureString", insecureValue: "-----BEGIN OPENSSH PRIVATE KEY-----" }, /in insecureValue/],
  ["private key as a write-only value of a SecureString", p.privateKeysInSecureStrings, p.SSM_PARAMETER, { type: "SecureString", valueWo: "-----BEGIN OPENSSH PRIVATE KEY-----", valueWoVersion: 1 }, null],
  ["private key as a write-only value of a String", p.privateKeysInSecureStrings, p.SSM_PARAMETER, { type: "String", valueWo: "-----BEGIN OPENSSH PRIVATE KEY-----", valueWoVersion: 1 }, /\(valueWo\) but is String, not SecureString/],
  ["private key under the relay's own key", p.privateKeysUnderOwnKey, p.SSM_PARAMETER, { type: "SecureString", valueWo: KEY_TEXT, keyId: KMS_ARN }, null],
  ["private key under the default aws/ssm key", p.privateKeysUnderOwnKey, p.SSM_PARAMETER, { type: "SecureString", valueWo: KEY_TEXT }, /under the default aws\/ssm key: set keyId/],
  ["private key under alias/aws/ssm", p.privateKeysUnderOwnKey, p.SSM_PARAMETER, { type: "SecureString", value: KEY_TEXT, keyId: "alias/aws/ssm" }, /under alias\/aws\/ssm/],
  ["private key under the aws/ssm alias ARN", p.privateKeysUnderOwnKey, p.SSM_PARAMETER, { type: "SecureString", value: KEY_TEXT, keyId: "arn:aws:kms:us-east-1:123456789012:alias/aws/ssm" }, /under arn:aws:kms:.*alias\/aws\/ssm/],
  ["a plain parameter without a key, no keyId", p.privateKeysUnderOwnKey, p.SSM_PARAMETER, { type: "String", value: "ami-123" }, null],
  ["a KMS key whose policy names its principals", p.kmsKeysNamePrincipals, p.KMS_KEY, { policy: NAMED_KEY_POLICY }, null],
  ["a KMS key with the default key policy", p.kmsKeysNamePrincipals, p.KMS_KEY, {}, /has the default key policy/],
  ["a KMS key that delegates to the account (root, kms:*)", p.kmsKeysNamePrincipals, p.KMS_KEY, { policy: keyPolicy({ AWS: "arn:aws:iam::123456789012:root" }, "kms:*") }, /lets arn:aws:iam::123456789012:root kms:\*/],
  ["a KMS key that lets everyone decrypt", p.kmsKeysNamePrincipals, p.KMS_KEY, { policy: keyPolicy("*", ["kms:Decrypt"]) }, /lets \* kms:Decrypt/],
  ["a KMS key that lets the account id create grants", p.kmsKeysNamePrincipals, p.KMS_KEY, { policy: keyPolicy({ AWS: "123456789012" }, "kms:Create*") }, /lets 123456789012 kms:Create\*/],
  ["a KMS key whose root statement only reads metadata", p.kmsKeysNamePrincipals, p.KMS_KEY, { policy: keyPolicy({ AWS: "arn:aws:iam::123456789012:root" }, ["kms:Describe*", "kms:List*"]) }, null],
  ["SSM core attachment", p.roleManagedPoliciesAllowlist, p.ROLE_POLICY_ATTACHMENT, { role: "r", policyArn: "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore" }, null],
  ["ECR read-only attachment", p.roleManagedPoliciesAllowlist, p.ROLE_POLICY_ATTACHMENT, { role: "r", policyArn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly" }, null],
  ["AdministratorAccess attachment", p.roleManagedPoliciesAllowlist, p.ROLE_POLICY_ATTACHMENT, { role: "r", policyArn: "arn:aws:iam::aws:policy/AdministratorAccess" }, /attaches arn:aws:iam::aws:policy\/AdministratorAccess/],
  ["role with an inline managed policy list", p.roleManagedPoliciesAllowlist, p.ROLE, { managedPolicyArns: ["arn:aws:iam::aws:policy/AmazonS3FullAccess"] }, /carries arn:aws:iam::aws:policy\/AmazonS3FullAccess/],
];

for (const [what, policy, type, props, expected, config] of CASES) {
  test(`${policy.name}: ${what} ${expected ? "is a violation" : "passes"}`, async (t) => {
    const v = await p.violationsOf(policy, resourceArgs(type, props, "subject", config ?? {}));
    if (expected) {
      t.is(v.length, 1, v.join("; "));
      t.regex(v[0]!, expected);
      t.regex(v[0]!, /subject/, "the violation names the resource");
    } else {
      t.deepEqual(v, []);
    }
  });
}

test("resource policies ignore resource types they are not about", async (t) => {
  for (const policy of p.resourcePolicies) {
    t.deepEqual(await p.violationsOf(policy, resourceArgs("aws:s3/bucket:Bucket", { ingress: [], egress: [] })), [], policy.name);
  }
});

test("relay-single-ingress-rule counts inline and separate ingress rules across the stack", async (t) => {
  const sg = policyResource(p.SECURITY_GROUP, SG([ONE]), "relay-sg");
  const check = (rs: ReturnType<typeof policyResource>[]) => p.stackViolationsOf(p.singleIngressRuleInStack, stackArgs(rs));
  t.deepEqual(await check([sg]), []);
  t.regex((await check([]))[0]!, /declares 0 ingress rules \(none\)/);
  const extra = policyResource(p.SG_RULE, { type: "ingress", protocol: "tcp", fromPort: 22, toPort: 22 }, "ssh");
  const v = await check([sg, extra]);
  t.regex(v[0]!, /declares 2 ingress rules \(relay-sg, ssh\)/);
  t.regex(v[1]!, /ssh opens port 22/);
  const vpcRule = policyResource(p.VPC_INGRESS_RULE, { ipProtocol: "tcp", fromPort: 80, toPort: 80 }, "http");
  t.regex((await check([sg, vpcRule]))[0]!, /declares 2 ingress rules/);
  const egressRule = policyResource(p.SG_RULE, { type: "egress", protocol: "tcp", fromPort: 443, toPort: 443 }, "out");
  t.deepEqual(await check([sg, egressRule]), [], "egress rules do not count");
});

test("ssm-core-role-reads-only-its-parameters: a role with SSM core needs the inline Deny of every other parameter", async (t) => {
  const core = policyResource(p.ROLE_POLICY_ATTACHMENT, { role: "relay-role", policyArn: p.SSM_CORE }, "relay-role-core");
  const ecr = policyResource(p.ROLE_POLICY_ATTACHMENT, { role: "relay-role", policyArn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly" }, "relay-role-ecr");
  const inline = (policy: string, role = "relay-role") => policyResource(p.ROLE_POLICY, { role, policy }, "relay-host-key-read");
  const check = (rs: ReturnType<typeof policyResource>[]) => p.stackViolationsOf(p.ssmCoreRoleReadsOnlyItsParameters, stackArgs(rs));
  t.deepEqual(await check([core, ecr, inline(hostKeyReadPolicy(PARAM_ARN, KMS_ARN))]), [], "the relay's own policy");
  t.deepEqual(await check([ecr]), [], "no SSM core, nothing to deny");
  t.regex((await check([core]))[0] ?? "", /relay-role-core gives role relay-role AmazonSSMManagedInstanceCore, which reads every SSM parameter .* without an inline Deny/);
  t.is((await check([core, inline(hostKeyReadPolicy(PARAM_ARN, KMS_ARN), "another-role")])).length, 1, "a Deny on another role does not count");
  const deny = (st: object) => inline(JSON.stringify({ Version: "2012-10-17", Statement: [st] }));
  t.is((await check([core, deny({ Effect: "Deny", Action: "ssm:GetParameter*", NotResource: "*" })])).length, 1, "NotResource * denies nothing");
  t.is((await check([core, deny({ Effect: "Deny", Action: ["ssm:GetParameter"], NotResource: PARAM_ARN })])).length, 1, "GetParameters and GetParametersByPath still open");
  t.deepEqual(await check([core, deny({ Effect: "Deny", Action: ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"], NotResource: [PARAM_ARN] })]), []);
  const role = policyResource(p.ROLE, { name: "r2", managedPolicyArns: [p.SSM_CORE] }, "r2");
  t.regex((await check([role]))[0] ?? "", /r2 gives role r2/, "a role's own managedPolicyArns count too");
});

test("the pack allows exactly the managed policies the relay attaches", (t) => {
  t.deepEqual([...p.ALLOWED_MANAGED_POLICIES].sort(), [...RELAY_MANAGED_POLICY_ARNS].sort());
});

test("the pack's policies have unique names and are all mandatory", (t) => {
  const names = p.allPolicies.map((x) => x.name);
  t.is(new Set(names).size, names.length);
  for (const x of p.allPolicies) t.is(x.enforcementLevel, "mandatory", x.name);
});
