// Which traffic the relay's security group lets through. Pure: no Pulumi, no I/O.

export interface SgRule {
  description: string;
  protocol: string;
  fromPort: number;
  toPort: number;
  cidrBlocks: string[];
  ipv6CidrBlocks: string[];
}

/**
 * The single ingress rule: TCP `remotePort` from the allowed networks. There is no port 22:
 * the host itself is managed through SSM Session Manager, and the only sshd is the relay's.
 */
export function ingressRules(remotePort: number, cidrs: { ipv4: readonly string[]; ipv6: readonly string[] }): SgRule[] {
  return [
    {
      description: `rtunnel relay sshd (TCP ${remotePort})`,
      protocol: "tcp",
      fromPort: remotePort,
      toPort: remotePort,
      cidrBlocks: [...cidrs.ipv4],
      ipv6CidrBlocks: [...cidrs.ipv6],
    },
  ];
}

/**
 * Egress is written out because the provider deletes AWS's default allow-all egress rule
 * when it manages a group's rules. HTTPS is all the host needs: dnf repositories, ECR and
 * its S3 layers, SSM. DNS, NTP and the instance metadata service are not filtered by
 * security groups, so they need no rule.
 */
export function egressRules(): SgRule[] {
  return [
    {
      description: "HTTPS out: dnf, ECR, S3, SSM",
      protocol: "tcp",
      fromPort: 443,
      toPort: 443,
      cidrBlocks: ["0.0.0.0/0"],
      ipv6CidrBlocks: ["::/0"],
    },
  ];
}
