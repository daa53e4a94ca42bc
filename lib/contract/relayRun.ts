// The one definition of how the rtunneld container is run. cloud-init (infra/cloudInit.ts)
// renders it for AWS and the fixtures run it here for real, so what boots in the cloud is
// what was tested. Pure: no Pulumi, no I/O.
import { DEFAULT_PORT_RANGE, RELAY_ADMIN_KEYS_PATH, RELAY_CONNECTION_LIMITS, RELAY_CONTAINER_PORT, RELAY_ENV, RELAY_HOST_KEY_PATH, RELAY_STATE_PATH } from "./relay.ts";

/** What a relay may be told through its env besides the port range; unset: the image's defaults. */
export interface RelaySettings {
  /** live connections per key, per account (RELAY_CONNECTION_LIMITS has the defaults) */
  limits?: Partial<Record<keyof typeof RELAY_CONNECTION_LIMITS, number>>;
  /** sshd time format: "900", "15m" (JUMP_UNUSED_TIMEOUT is the default) */
  jumpUnusedTimeout?: string;
}

export interface RelayRunOptions {
  /** Image reference: a local tag in tests, `repo@sha256:...` in the cloud. */
  image: string;
  containerName: string;
  /** Host port (or `ip:port`) published to the container's sshd. */
  publish: string;
  /** Host path of the ed25519 host key (0600). Omitted: the image generates one into the state volume. */
  hostKeyFile?: string;
  /** Host path of the admin authorized_keys file. */
  adminKeysFile?: string;
  /** Named volume or host directory for the registry and audit log. */
  stateVolume: string;
  portRange?: string;
  settings?: RelaySettings;
  /** Extra `docker run` flags placed before the image (tests add labels and networks). */
  extraFlags?: readonly string[];
  /** `-d` for tests; systemd runs it in the foreground instead. */
  detach?: boolean;
}

/**
 * Confinement of the relay container. sshd needs to change users (SETUID, SETGID), chroot
 * its pre-auth process (SYS_CHROOT) and signal its per-user children (KILL); the entrypoint
 * sets owners and modes in the state volume and reads a mounted host key whatever its owner
 * (CHOWN, FOWNER, DAC_OVERRIDE). Everything else is dropped, setuid binaries gain nothing,
 * the image is read-only (runtime state lives in tmpfs /run, mode 0755 because sshd's
 * StrictModes rejects a world-writable parent of the admin keys file), and a fork bomb or
 * connection flood stops at the pid limit (about 3 processes per connection).
 */
export const RELAY_HARDENING_FLAGS: readonly string[] = [
  "--cap-drop", "ALL",
  ...["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "SYS_CHROOT", "KILL"].flatMap((c) => ["--cap-add", c]),
  "--security-opt", "no-new-privileges",
  "--read-only",
  "--tmpfs", "/run:rw,nosuid,nodev,noexec,mode=0755,size=64m",
  "--tmpfs", "/tmp:rw,nosuid,nodev,noexec,mode=1777,size=16m",
  "--pids-limit", "4096",
];

/**
 * A session whose device died silently must end in seconds, and OpenSSH's keepalives
 * (ClientAliveInterval) do not cover a session with unsent data: every laptop connection to
 * the dead device's port queues a channel open on it, so a laptop retrying in a loop kept
 * such a session (and the port) up until TCP gave up, 15 minutes by default (seen in the
 * bench's dead-session row). Five retransmissions, about 13 s, is when the kernel gives up
 * here; the relay's network namespace is its own, so nothing else changes.
 */
export const RELAY_NET_FLAGS: readonly string[] = ["--sysctl", "net.ipv4.tcp_retries2=5"];

/**
 * The relay's log is bounded: sshd at LogLevel VERBOSE on an internet-facing port writes a line
 * or more per connection attempt, and the engine's default json-file driver keeps all of it on
 * the host's disk (8 GiB in the cloud). json-file with max-size/max-file is what every engine
 * has (Docker Engine, Docker Desktop, Podman), keeps `docker logs` working, and is named
 * explicitly because log options belong to a driver: under an engine whose default is another
 * driver, max-file alone would be refused. At most 3 files of 10 MiB. In the cloud, systemd
 * runs `docker run` in the foreground, so the same lines also reach the unit's journal, which
 * journald caps by its own limits.
 */
export const RELAY_LOG_FLAGS: readonly string[] = ["--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3"];

/** Arguments for `docker` (starting with `run`) that start the relay. */
export function relayRunArgs(o: RelayRunOptions): string[] {
  const args = ["run"];
  if (o.detach) args.push("-d");
  args.push("--name", o.containerName, "-p", `${o.publish}:${RELAY_CONTAINER_PORT}`);
  if (o.hostKeyFile) args.push("-v", `${o.hostKeyFile}:${RELAY_HOST_KEY_PATH}:ro`);
  if (o.adminKeysFile) args.push("-v", `${o.adminKeysFile}:${RELAY_ADMIN_KEYS_PATH}:ro`);
  args.push("-v", `${o.stateVolume}:${RELAY_STATE_PATH}`);
  args.push("-e", `${RELAY_ENV.portRange}=${o.portRange ?? DEFAULT_PORT_RANGE}`);
  for (const [account, max] of Object.entries(o.settings?.limits ?? {})) {
    args.push("-e", `${RELAY_CONNECTION_LIMITS[account as keyof typeof RELAY_CONNECTION_LIMITS].env}=${max}`);
  }
  if (o.settings?.jumpUnusedTimeout) args.push("-e", `${RELAY_ENV.jumpUnusedTimeout}=${o.settings.jumpUnusedTimeout}`);
  args.push(...RELAY_HARDENING_FLAGS, ...RELAY_NET_FLAGS, ...RELAY_LOG_FLAGS);
  args.push(...(o.extraFlags ?? []), o.image);
  return args;
}
