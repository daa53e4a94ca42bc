// Pulumi mocks for the relay program: no CLI, no AWS. Every registered resource is recorded
// (type, name, inputs, state) for the wiring tests and the policy pack; a call (data source)
// that is not mocked here throws, so a new lookup in the program fails loudly.
// Import this module, await `installMocks()`, then `await import()` the program.

import { createHash, generateKeyPairSync } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import sshpk from "sshpk";

export const ACCOUNT = "123456789012";
export const REGION = "us-east-1";
export const AMI_ID = "ami-0123456789abcdef0";
export const EIP_ADDRESS = "203.0.113.10";
export const INSTANCE_ID = "i-0123456789abcdef0";
export const VOLUME_ID = "vol-0123456789abcdef0";
export const OFFERED_ZONES = ["us-east-1c", "us-east-1a", "us-east-1b"];
/** Who runs `pulumi up` under the mocks: an SSO-style role, logged in as an STS session. */
export const DEPLOYER_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef`;
export const DEPLOYER_SESSION_ARN = `arn:aws:sts::${ACCOUNT}:assumed-role/AWSReservedSSO_Admin_0123456789abcdef/op@example.com`;
export const KMS_KEY_ID = "0123abcd-4567-89ef-0123-456789abcdef";

export interface RecordedResource {
  type: string;
  name: string;
  /** Inputs with Pulumi secrets unwrapped. */
  inputs: Record<string, unknown>;
  /** Inputs as the engine would see them (secrets still wrapped). */
  rawInputs: Record<string, unknown>;
  state: Record<string, unknown>;
}

export const resources: RecordedResource[] = [];
/** Every private key text the mocks handed out (OpenSSH and PEM forms). */
export const privateKeyTexts: string[] = [];
/** The public halves, as the tls provider returns them (`type base64\n`). */
export const publicKeyLines: string[] = [];

/** A real ed25519 key, in the shapes @pulumi/tls returns. */
export function realEd25519(): Record<string, string> {
  const { privateKey } = generateKeyPairSync("ed25519");
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const key = sshpk.parsePrivateKey(pem, "pem");
  const pub = key.toPublic();
  pub.comment = "";
  const publicKeyOpenssh = `${pub.toString("ssh").trim()}\n`;
  const privateKeyOpenssh = key.toString("openssh");
  privateKeyTexts.push(privateKeyOpenssh, pem);
  publicKeyLines.push(publicKeyOpenssh);
  return {
    algorithm: "ED25519",
    privateKeyOpenssh,
    privateKeyPem: pem,
    privateKeyPemPkcs8: pem,
    publicKeyOpenssh,
    publicKeyPem: pub.toString("pem"),
    publicKeyFingerprintSha256: pub.fingerprint("sha256").toString(),
  };
}

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270";

/** True for a value the engine receives as a secret. */
export function isSecret(v: unknown): boolean {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG] === SECRET_VALUE;
}

function unwrapSecrets(v: unknown): unknown {
  if (isSecret(v)) return unwrapSecrets((v as Record<string, unknown>)["value"]);
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  return v;
}

function outputsFor(type: string, name: string, inputs: Record<string, unknown>): { id: string; state: Record<string, unknown> } {
  const arn = (service: string, resource: string) => `arn:aws:${service}:${REGION}:${ACCOUNT}:${resource}`;
  switch (type) {
    case "tls:index/privateKey:PrivateKey":
      return { id: `${name}-id`, state: { ...inputs, ...realEd25519() } };
    case "aws:ssm/parameter:Parameter": {
      const paramName = String(inputs["name"] ?? name);
      return { id: paramName, state: { ...inputs, name: paramName, arn: arn("ssm", `parameter${paramName}`) } };
    }
    case "aws:iam/role:Role":
      return { id: name, state: { ...inputs, name, arn: `arn:aws:iam::${ACCOUNT}:role/${name}` } };
    case "aws:iam/instanceProfile:InstanceProfile":
      return { id: name, state: { ...inputs, name, arn: `arn:aws:iam::${ACCOUNT}:instance-profile/${name}` } };
    case "aws:ecr/repository:Repository": {
      const repoName = String(inputs["name"] ?? name);
      return {
        id: repoName,
        state: { ...inputs, name: repoName, registryId: ACCOUNT, arn: arn("ecr", `repository/${repoName}`), repositoryUrl: `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/${repoName}` },
      };
    }
    case "docker:index/image:Image": {
      const imageName = String(inputs["imageName"]);
      const repo = imageName.replace(/:[^:/]+$/, "");
      const digest = createHash("sha256").update(imageName).digest("hex");
      return { id: `${repo}@sha256:${digest}`, state: { ...inputs, imageName, repoDigest: `${repo}@sha256:${digest}` } };
    }
    case "aws:ec2/securityGroup:SecurityGroup":
      return { id: "sg-0123456789abcdef0", state: { ...inputs, arn: arn("ec2", "security-group/sg-0123456789abcdef0") } };
    case "aws:kms/key:Key":
      return { id: KMS_KEY_ID, state: { ...inputs, keyId: KMS_KEY_ID, arn: arn("kms", `key/${KMS_KEY_ID}`) } };
    case "aws:ebs/volume:Volume":
      return { id: VOLUME_ID, state: { ...inputs, arn: arn("ec2", `volume/${VOLUME_ID}`) } };
    case "aws:ec2/instance:Instance":
      return { id: INSTANCE_ID, state: { ...inputs, arn: arn("ec2", `instance/${INSTANCE_ID}`), publicIp: "198.51.100.7" } };
    case "aws:ec2/eip:Eip":
      return { id: "eipalloc-0123456789abcdef0", state: { ...inputs, allocationId: "eipalloc-0123456789abcdef0", publicIp: EIP_ADDRESS } };
    default:
      return { id: `${name}-id`, state: { ...inputs } };
  }
}

export const mocks: pulumi.runtime.Mocks = {
  newResource(args: pulumi.runtime.MockResourceArgs) {
    const inputs = unwrapSecrets(args.inputs) as Record<string, unknown>;
    const out = outputsFor(args.type, args.name, inputs);
    resources.push({ type: args.type, name: args.name, inputs, rawInputs: args.inputs as Record<string, unknown>, state: out.state });
    return out;
  },
  call(args: pulumi.runtime.MockCallArgs) {
    switch (args.token) {
      case "aws:ssm/getParameter:getParameter":
        return { name: args.inputs["name"], type: "String", value: AMI_ID, id: args.inputs["name"] };
      case "aws:ecr/getAuthorizationToken:getAuthorizationToken":
        return {
          userName: "AWS",
          password: "mock-ecr-password",
          authorizationToken: Buffer.from("AWS:mock-ecr-password").toString("base64"),
          proxyEndpoint: `https://${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com`,
          expiresAt: "2099-01-01T00:00:00Z",
          id: REGION,
        };
      case "aws:index/getCallerIdentity:getCallerIdentity":
        return { id: ACCOUNT, accountId: ACCOUNT, arn: DEPLOYER_SESSION_ARN, userId: "AROAEXAMPLE:op@example.com" };
      case "aws:iam/getSessionContext:getSessionContext": {
        if (args.inputs["arn"] !== DEPLOYER_SESSION_ARN) throw new Error(`mock getSessionContext knows only ${DEPLOYER_SESSION_ARN} (got ${String(args.inputs["arn"])})`);
        return {
          id: DEPLOYER_SESSION_ARN, arn: DEPLOYER_SESSION_ARN, issuerArn: DEPLOYER_ROLE_ARN, issuerId: "AROAEXAMPLE",
          issuerName: "AWSReservedSSO_Admin_0123456789abcdef", sessionName: "op@example.com",
        };
      }
      case "aws:index/getRegion:getRegion":
        return { id: REGION, name: REGION, region: REGION, description: "US East (N. Virginia)", endpoint: `ec2.${REGION}.amazonaws.com` };
      case "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
        return { id: REGION, locations: OFFERED_ZONES, locationTypes: OFFERED_ZONES.map(() => "availability-zone"), instanceTypes: OFFERED_ZONES.map(() => "t4g.nano") };
      default:
        throw new Error(`mock not implemented: ${args.token}`);
    }
  },
};

export async function installMocks(): Promise<void> {
  await pulumi.runtime.setMocks(mocks, "rtunnel", "test", false);
}

/** Sets `rtunnel:*` config (values as Pulumi stores them: strings, JSON for lists). */
export function setRelayConfig(config: Record<string, string>): void {
  pulumi.runtime.setAllConfig(Object.fromEntries(Object.entries(config).map(([k, v]) => [`rtunnel:${k}`, v])));
}

/** Resolves an Output (mocks are not in preview, so it resolves). */
export function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => { resolve(v); return v; }));
}

/** Waits until no new resource has been registered for a while (bounded). */
export async function settled(maxMs = 5000): Promise<void> {
  const start = Date.now();
  let last = -1;
  let quiet = 0;
  while (Date.now() - start < maxMs) {
    await new Promise((r) => setTimeout(r, 10));
    if (resources.length === last) {
      if (++quiet >= 10) return;
    } else {
      last = resources.length;
      quiet = 0;
    }
  }
}
