// The one way a relay container is started outside the cloud: by the tests, the bench and
// the demo. It runs exactly relayRunArgs() (what cloud-init renders), publishes the relay's
// port on 127.0.0.1 (the address the laptop side uses, on Linux and on Docker Desktop alike),
// and returns only once the entrypoint's ready line says sshd listens.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { RELAY_CONTAINER_PORT, RELAY_READY_LINE, relayRunArgs } from "../../infra/relayContainer.ts";
import { docker } from "./docker.ts";
import { buildImage } from "./images.ts";
import { keygen } from "./keys.ts";
import { waitFor } from "./poll.ts";

export interface RelayKeyFiles {
  /** the host key (0600), mounted read-only as in the cloud */
  hostKeyFile: string;
  /** its public line, `ssh-ed25519 AAAA...` (no comment) */
  hostKey: string;
  /** authorized_keys for the admin account */
  adminKeysFile: string;
}

/** A host key and an admin_keys file in `dir` (the host key is kept when it is already there). */
export async function relayKeyFiles(dir: string, adminPublicKeys: readonly string[]): Promise<RelayKeyFiles> {
  const hostKeyFile = path.join(dir, "ssh_host_ed25519_key");
  const hostKey = (await keygen(hostKeyFile, "rtunneld")).split(/\s+/).slice(0, 2).join(" ");
  const adminKeysFile = path.join(dir, "admin_keys");
  await writeFile(adminKeysFile, adminPublicKeys.map((k) => `${k.trim()}\n`).join(""));
  return { hostKeyFile, hostKey, adminKeysFile };
}

export interface RelayContainerOptions {
  name: string;
  /** the Docker network the relay sits on (its `internet`) */
  network: string;
  /** a fixed address on it (a replaced relay keeps the address, as the Elastic IP does) */
  ip?: string;
  stateVolume: string;
  /** omitted: the image generates a host key into the state volume */
  hostKeyFile?: string;
  adminKeysFile: string;
  portRange?: string;
  /** labels for teardown (a Scope's flags, the demo's label) */
  flags: readonly string[];
  image?: string;
  /** false: start it and return at once (a misconfigured relay that is expected to exit) */
  wait?: boolean;
}

export interface RelayContainer {
  container: string;
  /** the relay's port as published on 127.0.0.1 of this machine */
  publishedPort: number;
}

/** The relay's sshd is listening: its ready line in the log (since `since`, an ISO time, when it was restarted). */
export async function waitRelayReady(container: string, since?: string): Promise<void> {
  await waitFor(`the relay ${container} to be ready (${JSON.stringify(RELAY_READY_LINE)} in its log)`, async () => {
    const logs = await docker(["logs", ...(since ? ["--since", since] : []), container], { check: false });
    if (logs.stderr.includes(RELAY_READY_LINE)) return true;
    const state = await docker(["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", container], { check: false });
    if (state.stdout.startsWith("false")) throw new Error(`the relay ${container} exited (${state.stdout.trim()}): ${logs.stderr.trim().split("\n").slice(-3).join(" | ")}`);
    return false;
  }, { tries: 480, intervalMs: 250, rethrow: true });
}

export async function publishedPort(container: string, port = RELAY_CONTAINER_PORT): Promise<number> {
  const out = (await docker(["port", container, `${port}/tcp`])).stdout.trim().split("\n");
  const v4 = out.find((l) => l.startsWith("127.0.0.1:")) ?? out[0] ?? "";
  const n = Number(v4.split(":").pop());
  if (!Number.isInteger(n) || n < 1) throw new Error(`${container} publishes no port ${port}: ${JSON.stringify(out)}`);
  return n;
}

/** Starts a relay container as the cloud runs it, and waits until its sshd listens. */
export async function startRelayContainer(o: RelayContainerOptions): Promise<RelayContainer> {
  const image = o.image ?? (await buildImage("rtunneld"));
  await docker(relayRunArgs({
    image, containerName: o.name, publish: "127.0.0.1:0", hostKeyFile: o.hostKeyFile, adminKeysFile: o.adminKeysFile,
    stateVolume: o.stateVolume, portRange: o.portRange, detach: true,
    extraFlags: [...o.flags, "--network", o.network, ...(o.ip ? ["--ip", o.ip] : [])],
  }));
  if (o.wait === false) return { container: o.name, publishedPort: 0 };
  await waitRelayReady(o.name);
  return { container: o.name, publishedPort: await publishedPort(o.name) };
}
