// Hand-built arguments for calling policy checks directly (no policy server, no CLI).

import type { PolicyResource, ResourceValidationArgs, StackValidationArgs } from "@pulumi/policy";

const notApplicable = (reason?: string): never => {
  throw new Error(`not applicable: ${reason ?? ""}`);
};

const opts = { protect: false, ignoreChanges: [], aliases: [], customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 }, additionalSecretOutputs: [] };

export function resourceArgs(type: string, props: Record<string, unknown>, name = "r", config: object = {}): ResourceValidationArgs {
  return {
    type,
    props,
    name,
    urn: `urn:pulumi:test::rtunnel::${type}::${name}`,
    opts,
    stackTags: new Map(),
    isType: () => { throw new Error("policies must compare args.type, not call isType"); },
    asType: () => { throw new Error("policies must read args.props, not call asType"); },
    getConfig: <T extends object>() => config as T,
    notApplicable,
  } as ResourceValidationArgs;
}

export function policyResource(type: string, props: Record<string, unknown>, name = "r"): PolicyResource {
  return { ...resourceArgs(type, props, name), dependencies: [], propertyDependencies: {} } as unknown as PolicyResource;
}

export function stackArgs(resources: PolicyResource[], config: object = {}): StackValidationArgs {
  return { resources, stackTags: new Map(), getConfig: <T extends object>() => config as T, notApplicable };
}
