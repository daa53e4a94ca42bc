// Who may do what, and what things are called: the rendered policy documents asked questions
// through a small evaluator (test/infra/iamEval.ts), the physical names as tables and
// properties. Pure: no Pulumi, no AWS.

import test from "ava";
import fc from "fast-check";
import { parseKeyAdminArns } from "../infra/config.ts";
import { hostKeyKeyPolicy, hostKeyReadPolicy, hostKeyValueVersion, parameterArn } from "../infra/iam.ts";
import { ecrComponent, relayNames } from "../infra/names.ts";
import { awsManagedSsmKeyPolicy, canReadSecureString, identityDecision, kmsDecision, managedPolicy } from "./infra/iamEval.ts";

const ACCOUNT = "123456789012";
const REGION = "eu-central-1";
const PARAM = parameterArn("aws", REGION, ACCOUNT, "/rtunnel/rtunnel/dev/relay/ssh_host_ed25519_key");
const KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/0123abcd-4567-89ef-0123-456789abcdef`;
const ROLE = `arn:aws:iam::${ACCOUNT}:role/relay-role-1234567`;
const DEPLOYER = `arn:aws:iam::${ACCOUNT}:role/deployer`;
const BREAK_GLASS = `arn:aws:iam::${ACCOUNT}:role/break-glass`;
const VIA_SSM = { "kms:ViaService": `ssm.${REGION}.amazonaws.com`, "kms:EncryptionContext:PARAMETER_ARN": PARAM, "kms:CallerAccount": ACCOUNT };
const SSM_CORE = managedPolicy("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore");
const ADMIN = managedPolicy("arn:aws:iam::aws:policy/AdministratorAccess");

test("the evaluator: an explicit Deny wins over any Allow, NotResource exempts, conditions must all hold", (t) => {
  const allowAll = { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "ssm:*", Resource: "*" }] };
  const denyBut = { Version: "2012-10-17", Statement: [{ Effect: "Deny", Action: "ssm:GetParameter*", NotResource: "arn:x:1" }] };
  t.is(identityDecision([allowAll, denyBut], { action: "ssm:GetParameters", resource: "arn:x:2" }), "deny");
  t.is(identityDecision([allowAll, denyBut], { action: "ssm:GetParameter", resource: "arn:x:1" }), "allow");
  t.is(identityDecision([denyBut], { action: "ssm:GetParameter", resource: "arn:x:1" }), "implicit");
  t.is(identityDecision([allowAll], { action: "SSM:getparameter", resource: "arn:x:1" }), "allow", "actions are case-insensitive");
  const conditioned = { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "kms:Decrypt", Resource: "*", Condition: { StringEquals: { a: "1", b: "2" } } }] };
  t.is(identityDecision([conditioned], { action: "kms:Decrypt", resource: "k", context: { a: "1" } }), "implicit");
  t.is(identityDecision([conditioned], { action: "kms:Decrypt", resource: "k", context: { a: "1", b: "2" } }), "allow");
  const rootDelegates = { Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: "kms:*", Resource: "*" }] };
  t.is(kmsDecision(rootDelegates, { principal: ROLE, identity: [], action: "kms:Decrypt", resource: KEY }), "implicit", "the account's root hands the decision to IAM");
  t.is(kmsDecision(rootDelegates, { principal: ROLE, identity: [ADMIN], action: "kms:Decrypt", resource: KEY }), "allow");
  t.throws(() => identityDecision([{ Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "*", Resource: "*", Condition: { IpAddress: { "aws:SourceIp": "1.2.3.4" } } }] }], { action: "x", resource: "y" }), { message: /IpAddress not implemented/ });
});

test("the role policy: GetParameter on the host key, Deny ssm:GetParameter* on every other parameter, Decrypt of its key through SSM only", (t) => {
  const identity = [SSM_CORE, hostKeyReadPolicy(PARAM, KEY)];
  t.is(identityDecision(identity, { action: "ssm:GetParameter", resource: PARAM }), "allow");
  fc.assert(fc.property(fc.stringMatching(/^\/[a-zA-Z0-9_./-]{1,40}$/), fc.constantFrom("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"), (name, action) => {
    const other = `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter${name}`;
    return other === PARAM || identityDecision(identity, { action, resource: other }) === "deny";
  }));
  t.is(identityDecision(identity, { action: "kms:Decrypt", resource: KEY, context: VIA_SSM }), "allow");
  t.is(identityDecision(identity, { action: "kms:Decrypt", resource: KEY }), "implicit", "not outside SSM");
  t.is(identityDecision(identity, { action: "kms:Decrypt", resource: `arn:aws:kms:${REGION}:${ACCOUNT}:key/other`, context: VIA_SSM }), "implicit", "no other key");
});

test("with the AWS managed aws/ssm key, any principal of the account that may GetParameter reads the host key (why the relay has its own key)", (t) => {
  const enc = { parameterArn: PARAM, keyArn: `arn:aws:kms:${REGION}:${ACCOUNT}:key/aws-ssm`, keyPolicy: awsManagedSsmKeyPolicy(ACCOUNT, REGION), region: REGION, account: ACCOUNT };
  t.true(canReadSecureString({ arn: `arn:aws:iam::${ACCOUNT}:role/ops`, identity: [managedPolicy("arn:aws:iam::aws:policy/AmazonSSMReadOnlyAccess")] }, enc));
});

test("the key policy names its principals: the instance role and the deployer decrypt through SSM, administrators only manage, nobody else", (t) => {
  const policy = hostKeyKeyPolicy({ instanceRoleArn: ROLE, deployerArn: DEPLOYER, adminArns: [BREAK_GLASS], parameterArn: PARAM });
  const enc = { parameterArn: PARAM, keyArn: KEY, keyPolicy: policy, region: REGION, account: ACCOUNT };
  t.true(canReadSecureString({ arn: ROLE, identity: [SSM_CORE, hostKeyReadPolicy(PARAM, KEY)] }, enc));
  t.true(canReadSecureString({ arn: DEPLOYER, identity: [ADMIN] }, enc));
  for (const arn of [BREAK_GLASS, `arn:aws:iam::${ACCOUNT}:role/admin`, `arn:aws:iam::${ACCOUNT}:root`, `arn:aws:iam::${ACCOUNT}:user/alice`, "arn:aws:iam::999999999999:role/relay-role-1234567"]) {
    t.false(canReadSecureString({ arn, identity: [ADMIN] }, enc), arn);
  }
  const decide = (principal: string, action: string, context?: Record<string, string>) => kmsDecision(policy, { principal, identity: [ADMIN], action, resource: KEY, context });
  t.is(decide(DEPLOYER, "kms:Encrypt", VIA_SSM), "allow", "the deployer writes the parameter");
  t.is(decide(ROLE, "kms:Encrypt", VIA_SSM), "implicit", "the instance role cannot overwrite it");
  for (const admin of [DEPLOYER, BREAK_GLASS]) {
    t.is(decide(admin, "kms:PutKeyPolicy"), "allow");
    t.is(decide(admin, "kms:CreateGrant"), "implicit", "no grants: a grant would hand out Decrypt");
    t.is(decide(admin, "kms:Decrypt"), "implicit", "no direct decryption");
  }
  t.deepEqual((JSON.parse(policy) as { Statement: { Principal: { AWS: string | string[] } }[] }).Statement.flatMap((s) => [s.Principal.AWS].flat()).filter((p) => /:root$|^\*$/.test(p)), [], "no statement hands the key to IAM or to everyone");
});

test("the key policy and the role policy refuse an STS session, a malformed ARN or a parameter ARN without a region", (t) => {
  const base = { instanceRoleArn: ROLE, deployerArn: DEPLOYER, adminArns: [], parameterArn: PARAM };
  t.throws(() => hostKeyKeyPolicy({ ...base, deployerArn: `arn:aws:sts::${ACCOUNT}:assumed-role/deployer/me` }), { instanceOf: TypeError, message: /deployer must be an IAM role, user or account ARN/ });
  t.throws(() => hostKeyKeyPolicy({ ...base, adminArns: ["*"] }), { instanceOf: TypeError, message: /key admin .*got "\*"/ });
  t.throws(() => hostKeyReadPolicy("arn:aws:ssm:::parameter/x", KEY), { instanceOf: TypeError });
  t.throws(() => parameterArn("aws", REGION, ACCOUNT, "no-slash"), { instanceOf: TypeError, message: /starts with "\/"/ });
});

test("rtunnel:keyAdminArns takes IAM role, user or root ARNs, as a list or one string; an STS session is refused with the fix", (t) => {
  t.deepEqual(parseKeyAdminArns(undefined), []);
  t.deepEqual(parseKeyAdminArns(JSON.stringify([BREAK_GLASS, BREAK_GLASS])), [BREAK_GLASS]);
  t.deepEqual(parseKeyAdminArns(`${BREAK_GLASS},arn:aws:iam::${ACCOUNT}:user/alice`), [BREAK_GLASS, `arn:aws:iam::${ACCOUNT}:user/alice`]);
  t.throws(() => parseKeyAdminArns(JSON.stringify([`arn:aws:sts::${ACCOUNT}:assumed-role/x/y`])), { instanceOf: TypeError, message: /^rtunnel:keyAdminArns\[0\] must be an IAM role or user ARN .*pulumi config set --path 'rtunnel:keyAdminArns\[0\]'/ });
  t.throws(() => parseKeyAdminArns("{\"a\":1}"), { instanceOf: TypeError, message: /^rtunnel:keyAdminArns must be a list/ });
});

test("the write-only value's version follows the public key: same key, same version; another key, another version", (t) => {
  const a = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
  t.is(hostKeyValueVersion(`${a}\n`), hostKeyValueVersion(a));
  t.not(hostKeyValueVersion(a), hostKeyValueVersion(a.replace(/J/, "K")));
  fc.assert(fc.property(fc.string(), (k) => {
    const v = hostKeyValueVersion(k);
    return Number.isInteger(v) && v >= 0 && v < 2 ** 31;
  }));
});

const NAMES: [string, string, string, string, string][] = [
  ["rtunnel", "dev", "relay", "rtunnel/rtunnel/dev/relay-rtunneld", "/rtunnel/rtunnel/dev/relay/ssh_host_ed25519_key"],
  ["rtunnel", "prod", "relay", "rtunnel/rtunnel/prod/relay-rtunneld", "/rtunnel/rtunnel/prod/relay/ssh_host_ed25519_key"],
  ["my-fork", "dev.eu", "relay", "rtunnel/my-fork/dev.eu/relay-rtunneld", "/rtunnel/my-fork/dev.eu/relay/ssh_host_ed25519_key"],
  ["rtunnel", "Dev", "relay", `rtunnel/rtunnel/dev-${ecrComponent("Dev").slice(4)}/relay-rtunneld`, "/rtunnel/rtunnel/Dev/relay/ssh_host_ed25519_key"],
  ["aws-relay", "ssm", "relay", "rtunnel/aws-relay/ssm/relay-rtunneld", "/rtunnel/aws-relay/ssm/relay/ssh_host_ed25519_key"],
];

test("physical names carry project, stack and component; ECR's are lowercase", (t) => {
  for (const [project, stack, name, repository, hostKeyParameter] of NAMES) {
    t.deepEqual(relayNames(project, stack, name), { repository, hostKeyParameter }, `${project}/${stack}/${name}`);
  }
  t.regex(ecrComponent("Dev"), /^dev-[0-9a-f]{8}$/);
  t.regex(ecrComponent("a__b"), /^a-b-[0-9a-f]{8}$/);
  t.regex(ecrComponent("_"), /^[0-9a-f]{8}$/);
});

const PULUMI_NAME = fc.stringMatching(/^[A-Za-z0-9_.-]{1,30}$/);
const ECR_REPOSITORY = /^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*\/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const SSM_NAME = /^(\/[a-zA-Z0-9_.-]+){2,15}$/;

test("two stacks (or projects) never share a repository or a parameter, and every name is one AWS accepts", (t) => {
  fc.assert(fc.property(PULUMI_NAME, PULUMI_NAME, PULUMI_NAME, PULUMI_NAME, (p1, s1, p2, s2) => {
    const a = relayNames(p1, s1, "relay");
    const b = relayNames(p2, s2, "relay");
    for (const n of [a, b]) {
      if (!ECR_REPOSITORY.test(n.repository) || n.repository.length > 256) return false;
      if (!SSM_NAME.test(n.hostKeyParameter) || /^\/(aws|ssm)/i.test(n.hostKeyParameter)) return false;
    }
    const same = p1 === p2 && s1 === s2;
    return same === (a.repository === b.repository) && same === (a.hostKeyParameter === b.hostKeyParameter);
  }), { numRuns: 500 });
  t.pass();
});

test("a project, stack or component name Pulumi would not give is refused, naming it", (t) => {
  t.throws(() => relayNames("rtunnel", "a/b", "relay"), { instanceOf: TypeError, message: /stack name must be .*got "a\/b"/ });
  t.throws(() => relayNames("", "dev", "relay"), { instanceOf: TypeError, message: /project name/ });
});
