// What the relay's instance role may do, and who may use the host key's KMS key. Pure: no
// Pulumi, no I/O.

import { createHash } from "node:crypto";

/** The only managed policies the role carries: SSM agent (no port 22) and ECR pull. */
export const RELAY_MANAGED_POLICY_ARNS: readonly string[] = [
  "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
  "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
];

export function ec2AssumeRolePolicy(): string {
  return JSON.stringify({
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
  });
}

/** Region of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`). */
export function arnRegion(arn: string): string {
  const parts = arn.split(":");
  const region = parts[3];
  if (parts.length < 6 || parts[0] !== "arn" || !region || !/^[a-z]{2}(-[a-z]+)+-\d$/.test(region)) {
    throw new TypeError(`expected a regional ARN like arn:aws:ssm:us-east-1:123456789012:parameter/x (got ${JSON.stringify(arn)})`);
  }
  return region;
}

/** Every SSM action that returns a parameter's value (GetParameter, GetParameters, GetParametersByPath, GetParameterHistory). */
export const PARAMETER_READ_ACTIONS = "ssm:GetParameter*";

/**
 * The instance role's own policy: read the one host-key parameter and decrypt it with the
 * relay's own KMS key, only through SSM and only for that parameter. And read no other
 * parameter: AmazonSSMManagedInstanceCore (which the SSM agent needs) allows
 * ssm:GetParameter and ssm:GetParameters on every parameter of the account, and an explicit
 * Deny is the one thing an attached managed policy cannot outweigh. (The agent needs no
 * parameter for Session Manager; Run Command documents resolve {{ssm:...}} with the sender's
 * rights, not the instance's.)
 */
export function hostKeyReadPolicy(parameterArn: string, keyArn: string): string {
  const region = arnRegion(parameterArn);
  arnRegion(keyArn);
  return JSON.stringify({
    Version: "2012-10-17",
    Statement: [
      { Sid: "ReadRelayHostKey", Effect: "Allow", Action: ["ssm:GetParameter"], Resource: parameterArn },
      { Sid: "ReadNoOtherParameter", Effect: "Deny", Action: [PARAMETER_READ_ACTIONS], NotResource: parameterArn },
      {
        Sid: "DecryptRelayHostKey",
        Effect: "Allow",
        Action: ["kms:Decrypt"],
        Resource: keyArn,
        Condition: { StringEquals: viaSsmFor(region, parameterArn) },
      },
    ],
  });
}

/** The KMS conditions of a request SSM makes for one parameter (its encryption context). */
export function viaSsmFor(region: string, parameterArn: string): Record<string, string> {
  return { "kms:ViaService": `ssm.${region}.amazonaws.com`, "kms:EncryptionContext:PARAMETER_ARN": parameterArn };
}

/** The ARN of an SSM parameter (`name` starts with "/"), known before the parameter exists. */
export function parameterArn(partition: string, region: string, accountId: string, name: string): string {
  if (!name.startsWith("/")) throw new TypeError(`an SSM parameter name for an ARN starts with "/" (got ${JSON.stringify(name)})`);
  const arn = `arn:${partition}:ssm:${region}:${accountId}:parameter${name}`;
  arnRegion(arn);
  return arn;
}

/** What the host key's KMS key policy needs to know. */
export interface HostKeyKeyPolicyInput {
  /** The relay's instance role: the one principal that reads the host key. */
  instanceRoleArn: string;
  /** Who runs `pulumi up` (an IAM role or user ARN, not an STS session: a session ARN changes at every login). */
  deployerArn: string;
  /** More key administrators (rtunnel:keyAdminArns), e.g. a break-glass role. */
  adminArns: readonly string[];
  parameterArn: string;
}

/** Managing the key: never using it, never granting its use (no kms:CreateGrant, no Decrypt). */
export const KEY_ADMIN_ACTIONS: readonly string[] = [
  "kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:ListKeyPolicies", "kms:GetKeyRotationStatus",
  "kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:ListResourceTags", "kms:TagResource", "kms:UntagResource",
  "kms:UpdateKeyDescription", "kms:EnableKey", "kms:DisableKey", "kms:ListGrants", "kms:RevokeGrant",
  "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
];

/** An IAM role or user ARN, or an account's root: what a key policy may name as a lasting principal. */
export const IAM_PRINCIPAL_ARN = /^arn:aws[a-z-]*:iam::\d{12}:(root|(role|user)\/[\w+=,.@/-]+)$/;

/**
 * The key policy of the host key's own KMS key. Unlike the AWS managed aws/ssm key (whose
 * policy lets every principal of the account decrypt through SSM) and unlike a default key
 * policy (whose "arn:...:root" statement hands the decision to IAM policies), it names its
 * principals: the instance role may decrypt, through SSM, only this parameter; the deployer
 * may encrypt it (SSM's PutParameter) and decrypt it through SSM too, because the AWS
 * provider reads every parameter back with WithDecryption=true after writing it, even a
 * write-only value (terraform-provider-aws internal/service/ssm/parameter.go,
 * resourceParameterRead), and the deployer holds the key in the Pulumi state anyway; the
 * administrators (the deployer and rtunnel:keyAdminArns) manage the key but cannot use it.
 * PutKeyPolicy is management: an administrator could rewrite this policy, which CloudTrail
 * records; no IAM policy alone can grant anyone the key.
 */
export function hostKeyKeyPolicy(o: HostKeyKeyPolicyInput): string {
  const region = arnRegion(o.parameterArn);
  for (const [what, arn] of [["instance role", o.instanceRoleArn], ["deployer", o.deployerArn], ...o.adminArns.map((a) => ["key admin", a])] as [string, string][]) {
    if (!IAM_PRINCIPAL_ARN.test(arn)) throw new TypeError(`the host key's ${what} must be an IAM role, user or account ARN (got ${JSON.stringify(arn)})`);
  }
  const admins = [...new Set([o.deployerArn, ...o.adminArns])];
  const viaSsm = { StringEquals: viaSsmFor(region, o.parameterArn) };
  return JSON.stringify({
    Version: "2012-10-17",
    Id: "rtunnel-relay-host-key",
    Statement: [
      { Sid: "KeyAdministration", Effect: "Allow", Principal: { AWS: admins }, Action: [...KEY_ADMIN_ACTIONS], Resource: "*" },
      { Sid: "DeployerWritesTheHostKey", Effect: "Allow", Principal: { AWS: o.deployerArn }, Action: ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"], Resource: "*", Condition: viaSsm },
      { Sid: "InstanceRoleReadsTheHostKey", Effect: "Allow", Principal: { AWS: o.instanceRoleArn }, Action: ["kms:Decrypt"], Resource: "*", Condition: viaSsm },
    ],
  });
}

/**
 * The version of the write-only parameter value: the provider writes valueWo only when this
 * number changes, and never reads the value back into its state. Derived from the public half,
 * so a new host key (a replaced tls.PrivateKey) is written and the same key is not.
 */
export function hostKeyValueVersion(publicKeyOpenssh: string): number {
  return createHash("sha256").update(publicKeyOpenssh.trim()).digest().readUInt32BE(0) >>> 1;
}
