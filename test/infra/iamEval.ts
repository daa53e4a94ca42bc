// A small evaluator of AWS policy documents, for the forms the relay's policies use, so the
// tests can ask "may this principal do that" of the rendered documents instead of comparing
// their text. It follows the published evaluation logic for one account: an explicit Deny
// wins; otherwise an Allow is needed. For KMS, the key policy decides: a statement naming the
// principal (or "*") allows by itself; one naming the account's root only hands the decision
// to IAM policies. Anything it does not know (a condition operator, a principal form) throws,
// so a document it cannot read fails the test instead of passing it.

export type Decision = "allow" | "deny" | "implicit";

interface Statement {
  Sid?: string;
  Effect: "Allow" | "Deny";
  Principal?: "*" | { AWS?: string | string[]; Service?: string | string[] };
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
}

export interface Request {
  action: string;
  resource: string;
  /** condition keys of the request, e.g. kms:ViaService */
  context?: Record<string, string>;
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function glob(pattern: string, value: string, caseless: boolean): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, caseless ? "i" : "");
  return re.test(value);
}

function statements(doc: string | object): Statement[] {
  const d = (typeof doc === "string" ? JSON.parse(doc) : doc) as { Version?: string; Statement: Statement | Statement[] };
  if (d.Version !== "2012-10-17") throw new Error(`policy document without Version 2012-10-17: ${JSON.stringify(d).slice(0, 80)}`);
  return Array.isArray(d.Statement) ? d.Statement : [d.Statement];
}

function conditionsHold(c: Statement["Condition"], context: Record<string, string>): boolean {
  for (const [op, pairs] of Object.entries(c ?? {})) {
    for (const [key, expected] of Object.entries(pairs)) {
      const actual = context[key];
      const values = list(expected);
      switch (op) {
        case "StringEquals":
          if (actual === undefined || !values.includes(actual)) return false;
          break;
        case "StringLike":
          if (actual === undefined || !values.some((v) => glob(v, actual, false))) return false;
          break;
        case "ForAnyValue:StringEquals":
          // A multi-valued key (kms:ResourceAliases) arrives here comma-separated.
          if (actual === undefined || !actual.split(",").some((a) => values.includes(a))) return false;
          break;
        default:
          throw new Error(`iamEval: condition operator ${op} not implemented`);
      }
    }
  }
  return true;
}

function applies(s: Statement, r: Request): boolean {
  const actionOk = s.Action !== undefined ? list(s.Action).some((a) => glob(a, r.action, true)) : !list(s.NotAction).some((a) => glob(a, r.action, true));
  const resourceOk = s.Resource !== undefined ? list(s.Resource).some((x) => glob(x, r.resource, false)) : s.NotResource !== undefined ? !list(s.NotResource).some((x) => glob(x, r.resource, false)) : false;
  return actionOk && resourceOk && conditionsHold(s.Condition, r.context ?? {});
}

/** Identity policies (no Principal): what they decide for one request. */
export function identityDecision(docs: readonly (string | object)[], r: Request): Decision {
  let allowed = false;
  for (const s of docs.flatMap(statements)) {
    if (s.Principal !== undefined) throw new Error(`iamEval: identity policy statement ${s.Sid ?? ""} has a Principal`);
    if (!applies(s, r)) continue;
    if (s.Effect === "Deny") return "deny";
    allowed = true;
  }
  return allowed ? "allow" : "implicit";
}

/** How a key policy statement's Principal covers `principal`: by name (or "*"), through the account's root, or not. */
function principalMatch(s: Statement, principal: string): "direct" | "account" | null {
  if (s.Principal === "*") return "direct";
  if (s.Principal === undefined || typeof s.Principal !== "object") throw new Error(`iamEval: key policy statement ${s.Sid ?? ""} has no Principal`);
  const account = /^arn:aws[a-z-]*:iam::(\d{12}):/.exec(principal)?.[1];
  for (const p of list(s.Principal.AWS)) {
    if (p === "*" || p === principal) return "direct";
    if (account && (p === account || new RegExp(`^arn:aws[a-z-]*:iam::${account}:root$`).test(p))) return "account";
  }
  return null;
}

export interface KmsRequest extends Request {
  principal: string;
  /** the principal's identity policies */
  identity: readonly (string | object)[];
}

/** Whether KMS lets `principal` do `action` on a key with this key policy. */
export function kmsDecision(keyPolicy: string | object, r: KmsRequest): Decision {
  const idDecision = identityDecision(r.identity, r);
  if (idDecision === "deny") return "deny";
  let direct = false;
  let viaAccount = false;
  for (const s of statements(keyPolicy)) {
    const m = principalMatch(s, r.principal);
    if (!m || !applies(s, r)) continue;
    if (s.Effect === "Deny") return "deny";
    if (m === "direct") direct = true;
    else viaAccount = true;
  }
  return direct || (viaAccount && idDecision === "allow") ? "allow" : "implicit";
}

/** A principal of the account: its ARN and its identity policies. */
export interface Principal {
  arn: string;
  identity: readonly (string | object)[];
}

/** Whether `who` can read a SecureString's plaintext: GetParameter allowed by IAM, and Decrypt through SSM allowed by KMS. */
export function canReadSecureString(who: Principal, p: { parameterArn: string; keyArn: string; keyPolicy: string | object; region: string; account: string }): boolean {
  const get = identityDecision(who.identity, { action: "ssm:GetParameter", resource: p.parameterArn });
  const decrypt = kmsDecision(p.keyPolicy, {
    principal: who.arn, identity: who.identity, action: "kms:Decrypt", resource: p.keyArn,
    context: { "kms:ViaService": `ssm.${p.region}.amazonaws.com`, "kms:EncryptionContext:PARAMETER_ARN": p.parameterArn, "kms:CallerAccount": p.account },
  });
  return get === "allow" && decrypt === "allow";
}

// AWS managed policies the relay's role carries, as AWS publishes them (aws-managed-policy
// reference, default versions at the time of writing). Only what the tests reason about.
export const MANAGED_POLICIES: Record<string, object> = {
  "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore": {
    Version: "2012-10-17",
    Statement: [
      {
        Effect: "Allow",
        Action: [
          "ssm:DescribeAssociation", "ssm:GetDeployablePatchSnapshotForInstance", "ssm:GetDocument", "ssm:DescribeDocument",
          "ssm:GetManifest", "ssm:GetParameter", "ssm:GetParameters", "ssm:ListAssociations", "ssm:ListInstanceAssociations",
          "ssm:PutInventory", "ssm:PutComplianceItems", "ssm:PutConfigurePackageResult", "ssm:UpdateAssociationStatus",
          "ssm:UpdateInstanceAssociationStatus", "ssm:UpdateInstanceInformation",
        ],
        Resource: "*",
      },
      { Effect: "Allow", Action: ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"], Resource: "*" },
      { Effect: "Allow", Action: ["ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage", "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply"], Resource: "*" },
    ],
  },
  "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly": {
    Version: "2012-10-17",
    Statement: [{
      Effect: "Allow",
      Action: ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:GetRepositoryPolicy", "ecr:DescribeRepositories", "ecr:ListImages", "ecr:DescribeImages", "ecr:BatchGetImage", "ecr:GetLifecyclePolicy", "ecr:GetLifecyclePolicyPreview", "ecr:ListTagsForResource", "ecr:DescribeImageScanFindings"],
      Resource: "*",
    }],
  },
  "arn:aws:iam::aws:policy/AmazonSSMReadOnlyAccess": {
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Action: ["ssm:Describe*", "ssm:Get*", "ssm:List*"], Resource: "*" }],
  },
  "arn:aws:iam::aws:policy/AdministratorAccess": {
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Action: "*", Resource: "*" }],
  },
};

export function managedPolicy(arn: string): object {
  const doc = MANAGED_POLICIES[arn];
  if (!doc) throw new Error(`iamEval: no copy of managed policy ${arn}: add it to MANAGED_POLICIES`);
  return doc;
}

/**
 * The key policy of an AWS managed key for SSM (aws/ssm), in the form AWS gives such keys:
 * every principal of the account may use it through SSM; the account may read its metadata.
 */
export function awsManagedSsmKeyPolicy(account: string, region: string): object {
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "Allow access through AWS Systems Manager for all principals in the account that are authorized to use AWS Systems Manager",
        Effect: "Allow",
        Principal: { AWS: "*" },
        Action: ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"],
        Resource: "*",
        Condition: { StringEquals: { "kms:CallerAccount": account, "kms:ViaService": `ssm.${region}.amazonaws.com` } },
      },
      { Sid: "Allow direct access to key metadata to the account", Effect: "Allow", Principal: { AWS: `arn:aws:iam::${account}:root` }, Action: ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"], Resource: "*" },
    ],
  };
}
