// The AWS relay: one component that only wires resources. Every decision (which ports,
// which CIDRs, what the host runs, what the role may read) is a pure function in a sibling
// module, tested without Pulumi.

import { fileURLToPath } from "node:url";
import * as aws from "@pulumi/aws";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { renderUserData } from "./cloudInit.ts";
import { isBurstable, pickAvailabilityZone, type RelayConfig } from "./config.ts";
import { keyLine, parsePublicKey } from "../lib/keys.ts";
import {
  ec2AssumeRolePolicy, hostKeyKeyPolicy, hostKeyReadPolicy, hostKeyValueVersion, parameterArn, RELAY_MANAGED_POLICY_ARNS,
} from "./iam.ts";
import { relayNames } from "./names.ts";
import { egressRules, ingressRules } from "./network.ts";

/** Amazon Linux 2023, arm64, latest: AWS keeps this public parameter current. */
export const AL2023_ARM64_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64";
export const DEFAULT_IMAGE_CONTEXT = fileURLToPath(new URL("../images/rtunneld", import.meta.url));

export interface RelayArgs extends RelayConfig {
  /** Build context of the rtunneld image (default: images/rtunneld of this repository). */
  imageContext?: string;
  /** Size of the state volume in GiB (default 1: the registry is a few KiB per device). */
  dataVolumeGiB?: number;
  tags?: Record<string, string>;
}

export class Relay extends pulumi.ComponentResource {
  public readonly relayHost: pulumi.Output<string>;
  public readonly relayPort: pulumi.Output<number>;
  /** The relay's public host key line (`ssh-ed25519 AAAA...`). */
  public readonly relayHostKey: pulumi.Output<string>;
  public readonly relayHostKeyFingerprint: pulumi.Output<string>;
  public readonly instanceId: pulumi.Output<string>;

  constructor(name: string, args: RelayArgs, opts?: pulumi.ComponentResourceOptions) {
    super("rtunnel:aws:Relay", name, {}, opts);
    const parent = { parent: this };
    const tags = { "rtunnel:relay": name, ...args.tags };

    // --- network: one way in (remotePort), HTTPS out ---
    const securityGroup = new aws.ec2.SecurityGroup(`${name}-sg`, {
      description: `rtunnel relay ${name}: ssh on ${args.remotePort} only`,
      ingress: ingressRules(args.remotePort, args.allowedCidrs),
      egress: egressRules(),
      tags,
    }, parent);

    // Physical names that carry the project and the stack: two stacks in one account never share one.
    const names = relayNames(pulumi.getProject(), pulumi.getStack(), name);

    // --- identity: SSM agent (the host has no port 22), ECR pull, and its host key only ---
    const role = new aws.iam.Role(`${name}-role`, {
      description: "rtunnel relay instance: SSM management, ECR pull, its host key",
      assumeRolePolicy: ec2AssumeRolePolicy(),
      tags,
    }, parent);
    const attachments = RELAY_MANAGED_POLICY_ARNS.map((policyArn) =>
      new aws.iam.RolePolicyAttachment(`${name}-role-${policyArn.split("/").pop()}`, { role: role.name, policyArn }, parent));

    // --- host key: generated once, kept in an SSM SecureString under the relay's own KMS key ---
    const hostKey = new tls.PrivateKey(`${name}-host-key`, { algorithm: "ED25519" }, parent);
    const caller = aws.getCallerIdentityOutput({}, parent);
    // The key policy names the deployer's role, not this login's STS session (which changes).
    const deployer = aws.iam.getSessionContextOutput({ arn: caller.arn }, parent);
    const region = aws.getRegionOutput({}, parent);
    const hostKeyArn = pulumi.all([caller.arn, region.region, caller.accountId])
      .apply(([callerArn, r, account]) => parameterArn(callerArn.split(":")[1] ?? "aws", r, account, names.hostKeyParameter));
    const hostKeyKey = new aws.kms.Key(`${name}-host-key-kms`, {
      description: `rtunnel relay ${pulumi.getProject()}/${pulumi.getStack()}/${name}: its SSH host key parameter`,
      policy: pulumi.all([role.arn, deployer.issuerArn, hostKeyArn]).apply(([instanceRoleArn, deployerArn, arn]) =>
        hostKeyKeyPolicy({ instanceRoleArn, deployerArn, adminArns: args.keyAdminArns, parameterArn: arn })),
      // KMS's shortest waiting period: a destroyed stack stops holding a key a week later.
      deletionWindowInDays: 7,
      // Rotating the key material re-encrypts nothing already stored (SSM keeps decrypting the
      // parameter with the old material), and each of the first two rotations adds $1 a month.
      enableKeyRotation: false,
      tags,
    }, parent);
    const hostKeyParameter = new aws.ssm.Parameter(`${name}-host-key`, {
      name: names.hostKeyParameter,
      description: "rtunnel relay SSH host key (OpenSSH private key)",
      type: "SecureString",
      keyId: hostKeyKey.arn,
      // Write-only: the provider sends it and keeps it out of the parameter's state.
      valueWo: hostKey.privateKeyOpenssh,
      valueWoVersion: hostKey.publicKeyOpenssh.apply(hostKeyValueVersion),
      tags,
    }, parent);
    const hostKeyPolicy = new aws.iam.RolePolicy(`${name}-host-key-read`, {
      role: role.id,
      policy: pulumi.all([hostKeyParameter.arn, hostKeyKey.arn]).apply(([arn, keyArn]) => hostKeyReadPolicy(arn, keyArn)),
    }, parent);
    const profile = new aws.iam.InstanceProfile(`${name}-profile`, { role: role.name, tags }, parent);

    // --- image: built for arm64 here, pushed to a private repository, run by digest there ---
    const repository = new aws.ecr.Repository(`${name}-repo`, {
      name: names.repository,
      imageTagMutability: "MUTABLE",
      imageScanningConfiguration: { scanOnPush: true },
      forceDelete: true,
      tags,
    }, parent);
    new aws.ecr.LifecyclePolicy(`${name}-repo-lifecycle`, {
      repository: repository.name,
      policy: JSON.stringify({
        rules: [{
          rulePriority: 1,
          description: "keep the last 5 images: ECR storage is billed per GB-month",
          selection: { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 5 },
          action: { type: "expire" },
        }],
      }),
    }, parent);
    const auth = aws.ecr.getAuthorizationTokenOutput({ registryId: repository.registryId }, parent);
    const image = new docker.Image(`${name}-image`, {
      imageName: pulumi.interpolate`${repository.repositoryUrl}:relay`,
      build: {
        context: args.imageContext ?? DEFAULT_IMAGE_CONTEXT,
        platform: "linux/arm64",
      },
      registry: {
        server: repository.repositoryUrl,
        username: auth.userName,
        password: pulumi.secret(auth.password),
      },
    }, parent);

    // --- placement: the instance and its state volume share a zone that offers the type ---
    const offered = aws.ec2.getInstanceTypeOfferingsOutput({
      locationType: "availability-zone",
      filters: [{ name: "instance-type", values: [args.instanceType] }],
    }, parent);
    const zone = offered.locations.apply((l) => pickAvailabilityZone(l, args.instanceType, args.availabilityZone));
    const dataVolume = new aws.ebs.Volume(`${name}-data`, {
      availabilityZone: zone,
      size: args.dataVolumeGiB ?? 1,
      type: "gp3",
      encrypted: true,
      tags: { ...tags, Name: `${name}-data` },
    }, {
      ...parent,
      // The volume holds the device registry: once created it stays in its zone (the
      // instance follows it), even if the list of offering zones changes later.
      ignoreChanges: ["availabilityZone"],
    });

    // --- the host ---
    const ami = aws.ssm.getParameterOutput({ name: AL2023_ARM64_AMI_PARAMETER }, parent);
    const userData = pulumi
      .all([region.region, hostKeyParameter.name, image.repoDigest, dataVolume.id])
      .apply(([r, parameterName, digest, volumeId]) => renderUserData({
        region: r,
        hostKeyParameter: parameterName,
        image: digest,
        remotePort: args.remotePort,
        portRange: args.portRange,
        adminPublicKeys: args.adminPublicKeys,
        dataVolumeId: volumeId,
      }));
    const instance = new aws.ec2.Instance(`${name}-instance`, {
      ami: ami.value,
      instanceType: args.instanceType,
      availabilityZone: dataVolume.availabilityZone,
      iamInstanceProfile: profile.name,
      vpcSecurityGroupIds: [securityGroup.id],
      // IMDSv2 only, and one hop: a container on the Docker bridge cannot reach the
      // metadata service (and so cannot borrow the instance role).
      metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
      rootBlockDevice: { encrypted: true, volumeType: "gp3", volumeSize: 8, deleteOnTermination: true },
      ...(isBurstable(args.instanceType) ? { creditSpecification: { cpuCredits: "standard" } } : {}),
      userData,
      // cloud-init runs user-data on first boot only: a new image digest needs a new host.
      userDataReplaceOnChange: true,
      tags: { ...tags, Name: name },
    }, { ...parent, dependsOn: [...attachments, hostKeyPolicy] });

    new aws.ec2.VolumeAttachment(`${name}-data-attachment`, {
      instanceId: instance.id,
      volumeId: dataVolume.id,
      deviceName: "/dev/sdf",
      // Stop the old host before detaching, so the registry is unmounted cleanly.
      stopInstanceBeforeDetaching: true,
    }, { ...parent, deleteBeforeReplace: true });

    // --- the address: survives instance replacement ---
    const eip = new aws.ec2.Eip(`${name}-eip`, { domain: "vpc", tags: { ...tags, Name: name } }, parent);
    new aws.ec2.EipAssociation(`${name}-eip-assoc`, { instanceId: instance.id, allocationId: eip.allocationId }, parent);

    this.relayHost = eip.publicIp;
    this.relayPort = pulumi.output(args.remotePort);
    this.relayHostKey = hostKey.publicKeyOpenssh.apply((k) => keyLine(parsePublicKey(k, "the relay host key")));
    this.relayHostKeyFingerprint = hostKey.publicKeyOpenssh.apply((k) => parsePublicKey(k, "the relay host key").fingerprint);
    this.instanceId = instance.id;
    this.registerOutputs({
      relayHost: this.relayHost,
      relayPort: this.relayPort,
      relayHostKey: this.relayHostKey,
      relayHostKeyFingerprint: this.relayHostKeyFingerprint,
      instanceId: this.instanceId,
    });
  }
}
