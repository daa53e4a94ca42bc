// CrossGuard policies for the rtunnel relay. Plain objects with plain functions: the policy
// pack entry (index.ts) wraps them in a PolicyPack, and the tests call them directly (on
// hand-built resources and on what the real program registers under mocks), because
// importing the entry would start the policy server.

import type {
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";

export const SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup";
export const SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule";
export const VPC_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
export const INSTANCE = "aws:ec2/instance:Instance";
export const EBS_VOLUME = "aws:ebs/volume:Volume";
export const SSM_PARAMETER = "aws:ssm/parameter:Parameter";
export const ROLE = "aws:iam/role:Role";
export const ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment";
export const ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy";
export const KMS_KEY = "aws:kms/key:Key";
export const SSM_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";

/** Kept equal to infra/iam.ts's RELAY_MANAGED_POLICY_ARNS (a test holds them together). */
export const ALLOWED_MANAGED_POLICIES: readonly string[] = [
  SSM_CORE,
  "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
];

/** Policy pack config: the relay port the stack must expose (optional). */
export interface RelayPolicyConfig {
  remotePort?: number;
}

type Props = Record<string, unknown>;
interface Rule { protocol?: unknown; fromPort?: unknown; toPort?: unknown }

const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const covers22 = (r: Rule) => {
  const proto = String(r.protocol ?? "").toLowerCase();
  if (proto === "-1" || proto === "all") return true;
  const from = Number(r.fromPort);
  const to = Number(r.toPort);
  return (proto === "tcp" || proto === "6") && from <= 22 && 22 <= to;
};

/** Ingress rules declared anywhere in a stack: inline on groups and as separate resources. */
export function ingressRulesOf(resources: readonly { type: string; props: Props; name: string }[]): { name: string; rule: Rule }[] {
  const found: { name: string; rule: Rule }[] = [];
  for (const r of resources) {
    if (r.type === SECURITY_GROUP) for (const rule of list(r.props["ingress"])) found.push({ name: r.name, rule: rule as Rule });
    if (r.type === SG_RULE && r.props["type"] === "ingress") found.push({ name: r.name, rule: r.props as Rule });
    if (r.type === VPC_INGRESS_RULE) found.push({ name: r.name, rule: { protocol: r.props["ipProtocol"], fromPort: r.props["fromPort"], toPort: r.props["toPort"] } });
  }
  return found;
}

function forType(type: string, check: (props: Props, args: ResourceValidationArgs, report: ReportViolation) => void) {
  return (args: ResourceValidationArgs, report: ReportViolation): void => {
    if (args.type === type) check(args.props, args, report);
  };
}

export const relayIngressOnlyRemotePort: ResourceValidationPolicy = {
  name: "relay-ingress-only-remote-port",
  description: "A security group opens exactly one TCP port (the relay's REMOTE_PORT), never 22.",
  enforcementLevel: "mandatory",
  configSchema: { properties: { remotePort: { type: "integer", minimum: 1, maximum: 65535 } } },
  validateResource: forType(SECURITY_GROUP, (props, args, report) => {
    const ingress = list(props["ingress"]) as Rule[];
    if (ingress.length !== 1) {
      report(`security group ${args.name} has ${ingress.length} ingress rules; the relay needs exactly one (TCP REMOTE_PORT)`);
      return;
    }
    const rule = ingress[0]!;
    const { remotePort } = args.getConfig<RelayPolicyConfig>();
    if (String(rule.protocol).toLowerCase() !== "tcp" || rule.fromPort !== rule.toPort) {
      report(`security group ${args.name} ingress must be one TCP port (got protocol ${String(rule.protocol)}, ports ${String(rule.fromPort)}-${String(rule.toPort)})`);
    } else if (covers22(rule)) {
      report(`security group ${args.name} opens port 22: the host is managed through SSM, the relay listens on REMOTE_PORT`);
    } else if (remotePort !== undefined && rule.fromPort !== remotePort) {
      report(`security group ${args.name} opens port ${String(rule.fromPort)}, not REMOTE_PORT ${remotePort}`);
    }
  }),
};

export const singleIngressRuleInStack: StackValidationPolicy = {
  name: "relay-single-ingress-rule",
  description: "The whole stack declares exactly one ingress rule (inline or as a separate rule resource).",
  enforcementLevel: "mandatory",
  validateStack: (args: StackValidationArgs, report: ReportViolation) => {
    const rules = ingressRulesOf(args.resources);
    if (rules.length !== 1) {
      report(`the stack declares ${rules.length} ingress rules (${rules.map((r) => r.name).join(", ") || "none"}); the relay needs exactly one`);
    }
    for (const r of rules) if (covers22(r.rule)) report(`${r.name} opens port 22`);
  },
};

export const securityGroupExplicitEgress: ResourceValidationPolicy = {
  name: "security-group-explicit-egress",
  description: "Security groups state their egress (the provider removes AWS's default rule).",
  enforcementLevel: "mandatory",
  validateResource: forType(SECURITY_GROUP, (props, args, report) => {
    if (list(props["egress"]).length === 0) report(`security group ${args.name} has no egress rule: the host could not reach ECR, SSM or dnf`);
  }),
};

export const instanceImdsv2Required: ResourceValidationPolicy = {
  name: "instance-imdsv2-required",
  description: "Instances require IMDSv2 session tokens.",
  enforcementLevel: "mandatory",
  validateResource: forType(INSTANCE, (props, args, report) => {
    const md = (props["metadataOptions"] ?? {}) as Props;
    if (md["httpTokens"] !== "required") report(`instance ${args.name} must set metadataOptions.httpTokens to "required" (IMDSv2)`);
  }),
};

export const volumesEncrypted: ResourceValidationPolicy = {
  name: "volumes-encrypted",
  description: "Root, attached and standalone EBS volumes are encrypted.",
  enforcementLevel: "mandatory",
  validateResource: [
    forType(INSTANCE, (props, args, report) => {
      const root = (props["rootBlockDevice"] ?? {}) as Props;
      if (root["encrypted"] !== true) report(`instance ${args.name} must encrypt its root volume (rootBlockDevice.encrypted)`);
      for (const d of list(props["ebsBlockDevices"]) as Props[]) {
        if (d["encrypted"] !== true) report(`instance ${args.name} block device ${String(d["deviceName"])} is not encrypted`);
      }
    }),
    forType(EBS_VOLUME, (props, args, report) => {
      if (props["encrypted"] !== true) report(`EBS volume ${args.name} must be encrypted`);
    }),
  ],
};

const PRIVATE_KEY = /PRIVATE KEY/;

export const noSecretsInUserData: ResourceValidationPolicy = {
  name: "no-private-key-in-user-data",
  description: "User-data (readable with ec2:DescribeInstanceAttribute) carries no private key.",
  enforcementLevel: "mandatory",
  validateResource: forType(INSTANCE, (props, args, report) => {
    const text = `${String(props["userData"] ?? "")}\n${Buffer.from(String(props["userDataBase64"] ?? ""), "base64").toString()}`;
    if (PRIVATE_KEY.test(text)) report(`instance ${args.name} has private key material in its user-data`);
  }),
};

/** Every property an SSM parameter's value can arrive in (valueWo: write-only, never in state). */
const parameterValues = (props: Props): [string, string][] =>
  (["value", "valueWo", "insecureValue"] as const).flatMap((k) => (props[k] === undefined ? [] : [[k, String(props[k])] as [string, string]]));

export const privateKeysInSecureStrings: ResourceValidationPolicy = {
  name: "private-keys-in-securestring",
  description: "An SSM parameter that holds a private key (in value or valueWo) is a SecureString.",
  enforcementLevel: "mandatory",
  validateResource: forType(SSM_PARAMETER, (props, args, report) => {
    const holding = parameterValues(props).filter(([, v]) => PRIVATE_KEY.test(v)).map(([k]) => k);
    if (holding.includes("insecureValue")) {
      report(`SSM parameter ${args.name} holds a private key in insecureValue`);
    } else if (holding.length > 0 && props["type"] !== "SecureString") {
      report(`SSM parameter ${args.name} holds a private key (${holding.join(", ")}) but is ${String(props["type"])}, not SecureString`);
    }
  }),
};

export const privateKeysUnderOwnKey: ResourceValidationPolicy = {
  name: "private-keys-under-own-kms-key",
  description: "A SecureString that holds a private key names a customer-managed KMS key: the AWS managed aws/ssm key lets every principal of the account decrypt through SSM.",
  enforcementLevel: "mandatory",
  validateResource: forType(SSM_PARAMETER, (props, args, report) => {
    if (!parameterValues(props).some(([, v]) => PRIVATE_KEY.test(v))) return;
    const keyId = props["keyId"] === undefined ? "" : String(props["keyId"]);
    if (keyId === "" || /^(alias\/aws\/|arn:[^:]+:kms:[^:]*:[^:]*:alias\/aws\/)/.test(keyId)) {
      report(`SSM parameter ${args.name} holds a private key under ${keyId || "the default aws/ssm key"}: set keyId to a customer-managed key whose policy names who may decrypt`);
    }
  }),
};

interface PolicyStatement { Effect?: unknown; Principal?: unknown; Action?: unknown; NotAction?: unknown; Resource?: unknown; NotResource?: unknown }
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : v === undefined ? [] : [String(v)]);
/** The statements of a policy document (JSON text or an object); a text that is not JSON has none. */
function statementsOf(doc: unknown): PolicyStatement[] {
  let d: unknown = doc;
  if (typeof doc === "string") {
    try {
      d = JSON.parse(doc);
    } catch {
      return [];
    }
  }
  const st = (d as { Statement?: unknown } | undefined)?.Statement;
  return Array.isArray(st) ? (st as PolicyStatement[]) : st ? [st as PolicyStatement] : [];
}
/** Whether an IAM action pattern (with * and ?) covers `action`. */
export function actionCovers(pattern: string, action: string): boolean {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i").test(action);
}
const PARAMETER_READS = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"];

export const ssmCoreRoleReadsOnlyItsParameters: StackValidationPolicy = {
  name: "ssm-core-role-reads-only-its-parameters",
  description: "A role carrying AmazonSSMManagedInstanceCore (ssm:GetParameter(s) on every parameter) also carries an inline Deny of ssm:GetParameter* on all but named parameters.",
  enforcementLevel: "mandatory",
  validateStack: (args: StackValidationArgs, report: ReportViolation) => {
    const inline = args.resources.filter((r) => r.type === ROLE_POLICY);
    const carriers = [
      ...args.resources.filter((r) => r.type === ROLE_POLICY_ATTACHMENT && r.props["policyArn"] === SSM_CORE).map((r) => ({ name: r.name, role: r.props["role"] })),
      ...args.resources.filter((r) => r.type === ROLE && strings(r.props["managedPolicyArns"]).includes(SSM_CORE)).map((r) => ({ name: r.name, role: r.props["name"] })),
    ];
    for (const c of carriers) {
      const denies = inline.filter((p) => p.props["role"] === c.role).flatMap((p) => statementsOf(p.props["policy"])).some((st) =>
        st.Effect === "Deny"
        && PARAMETER_READS.every((a) => strings(st.Action).some((pat) => actionCovers(pat, a)))
        && st.Resource === undefined && strings(st.NotResource).length > 0 && !strings(st.NotResource).some((r) => r.includes("*")));
      if (!denies) {
        report(`${c.name} gives role ${String(c.role)} AmazonSSMManagedInstanceCore, which reads every SSM parameter of the account, without an inline Deny of ssm:GetParameter* on all but its own parameters (NotResource)`);
      }
    }
  },
};

export const kmsKeysNamePrincipals: ResourceValidationPolicy = {
  name: "kms-key-policy-names-who-decrypts",
  description: "A KMS key policy grants decryption (or grants, or everything) only to named principals: not to \"*\" and not to an account's root, which hands the decision to every IAM policy of the account.",
  enforcementLevel: "mandatory",
  validateResource: forType(KMS_KEY, (props, args, report) => {
    if (props["policy"] === undefined) {
      report(`KMS key ${args.name} has the default key policy, which lets IAM policies of the whole account grant its use: give it a policy naming who may decrypt`);
      return;
    }
    for (const st of statementsOf(props["policy"])) {
      if (st.Effect !== "Allow") continue;
      const principals = typeof st.Principal === "string" ? [st.Principal] : strings((st.Principal as { AWS?: unknown } | undefined)?.AWS);
      const broad = principals.filter((p) => p === "*" || /^\d{12}$/.test(p) || /:root$/.test(p));
      const uses = strings(st.Action).filter((a) => ["kms:Decrypt", "kms:CreateGrant", "kms:ReEncryptFrom"].some((x) => actionCovers(a, x)));
      if (broad.length > 0 && uses.length > 0) report(`KMS key ${args.name} lets ${broad.join(", ")} ${uses.join(", ")}: name the principals that may use it`);
    }
  }),
};

export const roleManagedPoliciesAllowlist: ResourceValidationPolicy = {
  name: "role-managed-policies-allowlist",
  description: "Roles carry no managed policy but SSM core and ECR read-only.",
  enforcementLevel: "mandatory",
  validateResource: [
    forType(ROLE_POLICY_ATTACHMENT, (props, args, report) => {
      const arn = String(props["policyArn"]);
      if (!ALLOWED_MANAGED_POLICIES.includes(arn)) report(`${args.name} attaches ${arn}; only ${ALLOWED_MANAGED_POLICIES.join(" and ")} are allowed`);
    }),
    forType(ROLE, (props, args, report) => {
      for (const arn of list(props["managedPolicyArns"]).map(String)) {
        if (!ALLOWED_MANAGED_POLICIES.includes(arn)) report(`role ${args.name} carries ${arn}; only ${ALLOWED_MANAGED_POLICIES.join(" and ")} are allowed`);
      }
    }),
  ],
};

export const resourcePolicies: ResourceValidationPolicy[] = [
  relayIngressOnlyRemotePort,
  securityGroupExplicitEgress,
  instanceImdsv2Required,
  volumesEncrypted,
  noSecretsInUserData,
  privateKeysInSecureStrings,
  privateKeysUnderOwnKey,
  kmsKeysNamePrincipals,
  roleManagedPoliciesAllowlist,
];
export const stackPolicies: StackValidationPolicy[] = [singleIngressRuleInStack, ssmCoreRoleReadsOnlyItsParameters];
export const allPolicies: (ResourceValidationPolicy | StackValidationPolicy)[] = [...resourcePolicies, ...stackPolicies];

/** Runs one resource policy's checks and returns the violation messages (for tests and tools). */
export async function violationsOf(policy: ResourceValidationPolicy, args: ResourceValidationArgs): Promise<string[]> {
  const out: string[] = [];
  const checks = policy.validateResource === undefined ? [] : Array.isArray(policy.validateResource) ? policy.validateResource : [policy.validateResource];
  for (const check of checks) await check(args, (m) => out.push(m));
  return out;
}

export async function stackViolationsOf(policy: StackValidationPolicy, args: StackValidationArgs): Promise<string[]> {
  const out: string[] = [];
  await policy.validateStack(args, (m) => out.push(m));
  return out;
}
