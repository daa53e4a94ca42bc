// The test bed: a Docker engine, the base image, the project's images, scoped containers
// with teardown, and the NAT topology. Tests import from here.
import { ensureBaseImage } from "./baseImage.ts";
import { ensureEngine } from "./engine.ts";

export { BASE_IMAGE, ensureBaseImage } from "./baseImage.ts";
export { docker, exec, inspect, run, CommandError, type RunResult, type RunOptions } from "./docker.ts";
export { ensureCommand, ensureEngine } from "./engine.ts";
export { keygen } from "./keys.ts";
export { buildImage, imageTag, type ProjectImage } from "./images.ts";
export { Scope, leftovers, useScope, sweepAll } from "./scope.ts";
export { createNatTopology, type Site, type Topology } from "./topology.ts";
export { repoRoot, cacheDir } from "./paths.ts";
export { mapLimit, waitFor } from "./poll.ts";
export { publishedPort, relayKeyFiles, startRelayContainer, waitRelayReady, type RelayContainer, type RelayContainerOptions, type RelayKeyFiles } from "./relay.ts";

/** Engine up and base image present; throws (never skips) when Docker can't be had. */
export async function ensureDocker(): Promise<void> {
  await ensureEngine();
  await ensureBaseImage();
}
