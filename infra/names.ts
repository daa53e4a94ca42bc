// Physical names of what the relay creates under a fixed name (everything else gets an
// auto-name with a random suffix). Two stacks in one account must never share one, so the
// project and the stack are part of each. Pure: no Pulumi, no I/O.

import { createHash } from "node:crypto";

export interface RelayNames {
  /** ECR repository: lowercase path components, `[a-z0-9]+([._-][a-z0-9]+)*` each. */
  repository: string;
  /** SSM parameter of the host key: a hierarchy under /rtunnel (names may not start with "aws" or "ssm"). */
  hostKeyParameter: string;
}

/** What Pulumi allows in a project or stack name, and what we allow in a component name. */
const PULUMI_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
const ECR_COMPONENT = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

function checked(what: string, value: string): string {
  if (!PULUMI_NAME.test(value)) {
    throw new TypeError(`the relay's ${what} must be 1-100 characters of A-Z, a-z, 0-9, _ . - (got ${JSON.stringify(value)}): rename it`);
  }
  return value;
}

/**
 * One ECR path component for a Pulumi name. A name that already is one stays as it is; any
 * other (upper case, `__`, a leading `-`) is lowercased, its other characters folded to `-`,
 * and a hash of the original appended, so `Dev` and `dev` stay two repositories.
 */
export function ecrComponent(value: string): string {
  if (ECR_COMPONENT.test(value)) return value;
  const folded = value.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  const hash = createHash("sha256").update(value).digest("hex").slice(0, 8);
  return folded ? `${folded}-${hash}` : hash;
}

export function relayNames(project: string, stack: string, name: string): RelayNames {
  const parts = [checked("project name", project), checked("stack name", stack), checked("component name", name)];
  const [p, s, n] = parts.map(ecrComponent) as [string, string, string];
  return {
    repository: `rtunnel/${p}/${s}/${n}-rtunneld`,
    hostKeyParameter: `/rtunnel/${parts.join("/")}/ssh_host_ed25519_key`,
  };
}
