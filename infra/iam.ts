// What the relay's instance role may do. Pure: no Pulumi, no I/O.

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

/**
 * Read access to the one host-key parameter. The SecureString is encrypted with the AWS
 * managed key aws/ssm; Decrypt is allowed only through SSM in this region, only for that
 * key alias, and only with this parameter's ARN as encryption context, so the role can
 * decrypt nothing else.
 */
export function hostKeyReadPolicy(parameterArn: string): string {
  const region = arnRegion(parameterArn);
  return JSON.stringify({
    Version: "2012-10-17",
    Statement: [
      { Sid: "ReadRelayHostKey", Effect: "Allow", Action: ["ssm:GetParameter"], Resource: parameterArn },
      {
        Sid: "DecryptRelayHostKey",
        Effect: "Allow",
        Action: ["kms:Decrypt"],
        Resource: "*",
        Condition: {
          StringEquals: {
            "kms:ViaService": `ssm.${region}.amazonaws.com`,
            "kms:EncryptionContext:PARAMETER_ARN": parameterArn,
          },
          "ForAnyValue:StringEquals": { "kms:ResourceAliases": "alias/aws/ssm" },
        },
      },
    ],
  });
}
