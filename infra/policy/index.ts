// Policy pack entry: `pulumi preview --policy-pack infra/policy` (see infra/README.md).
// Constructing the PolicyPack starts the policy server, so tests import ./policies.ts instead.

import { PolicyPack } from "@pulumi/policy";
import { allPolicies } from "./policies.ts";

new PolicyPack("rtunnel-relay", {
  description: "rtunnel relay: one ingress port, no SSH to the host, IMDSv2, encryption, no key material in user-data.",
  policies: allPolicies,
});
