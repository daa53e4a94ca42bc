// The relay's contract (images/rtunneld/README.md), in one place for the whole kit: the
// Pulumi program, cloud-init, the operator's CLI, the fixtures, the tests and the bench read
// it from here. The image says the same things in bash, Python and sshd_config; a unit test
// (test/contract.test.ts) holds those files to these values.

/** Where something reaches the relay's sshd (laptops and devices may use different ones). */
export interface RelayEndpoint {
  host: string;
  port: number;
}

/** sshd listens here inside the container; the host publishes it as REMOTE_PORT. */
export const RELAY_CONTAINER_PORT = 2222;

/** Container paths. */
export const RELAY_CONF_DIR = "/etc/rtunneld";
export const RELAY_HOST_KEY_PATH = `${RELAY_CONF_DIR}/ssh_host_ed25519_key`;
export const RELAY_ADMIN_KEYS_PATH = `${RELAY_CONF_DIR}/admin_keys`;
/** The state volume: registry, audit log, connection log. */
export const RELAY_STATE_PATH = "/var/lib/rtunneld";
export const RELAY_REGISTRY_FILE = `${RELAY_STATE_PATH}/registry/registry.json`;
export const RELAY_AUDIT_FILE = `${RELAY_STATE_PATH}/registry/audit.log`;
/** Runtime state (a tmpfs under --read-only). */
export const RELAY_RUN_DIR = "/run/rtunneld";

/**
 * Certificates (fleet CA, issue 15): the relay's own facts. The paths of the user CA keys and
 * the KRL (state volume, and where sshd reads them) are RELAY_CA_PATHS in ca.ts, with the
 * principal names and the key id the principals command accepts.
 */
export const RELAY_CERTIFICATES = {
  /** the AuthorizedPrincipalsCommand of `jump` (tokens: %u %f %C %F %i %s %k) */
  principalsCommand: "/usr/local/lib/rtunneld/rtunneld-principals",
  /** `set-user-ca` takes at most this many CA keys (two while rotating) */
  maxUserCaKeys: 8,
  /** the largest KRL `set-krl` takes (the binary file; it arrives as one line of base64) */
  maxKrlBytes: 1048576,
} as const;

/** Environment of the container. */
export const RELAY_ENV = {
  portRange: "RTUNNELD_PORT_RANGE",
  adminKeys: "RTUNNELD_ADMIN_KEYS",
  deviceConnections: "RTUNNELD_DEVICE_CONNECTIONS",
  clientConnections: "RTUNNELD_CLIENT_CONNECTIONS",
  adminConnections: "RTUNNELD_ADMIN_CONNECTIONS",
  jumpUnusedTimeout: "RTUNNELD_JUMP_UNUSED_TIMEOUT",
} as const;

/**
 * The most live authenticated connections one key may hold, per account, unless the
 * container's env says otherwise. A device: its tunnel, plus one to replace a session the
 * relay has not yet noticed is dead. A laptop: parallel scp/rsync/Ansible forks through
 * ProxyJump without multiplexing. The operator: a few admin commands at once.
 */
export const RELAY_CONNECTION_LIMITS = {
  tunnel: { env: RELAY_ENV.deviceConnections, max: 2 },
  jump: { env: RELAY_ENV.clientConnections, max: 32 },
  admin: { env: RELAY_ENV.adminConnections, max: 4 },
} as const;

/**
 * A jump connection with no channel for this long is closed: longer than the ControlPersist
 * time enrollment writes (laptop/model.ts CONTROL_PERSIST), so the relay never cuts a master
 * that ssh would keep.
 */
export const JUMP_UNUSED_TIMEOUT = "15m";

/** Ports handed to devices: below Linux's ephemeral range, never the relay's own. */
export const DEFAULT_PORT_RANGE = "20000-29999";

/** The three SSH accounts, and the two helpers' own users (fixed ids: the volume keeps its owners). */
export const RELAY_ACCOUNTS = {
  tunnel: { uid: 2001, who: "devices" },
  jump: { uid: 2002, who: "laptops" },
  admin: { uid: 2003, who: "the operator" },
  rtkeys: { uid: 2004, who: "the key lookup (AuthorizedKeysCommandUser)" },
  rtlog: { uid: 2005, who: "the connection log reader" },
} as const;
export type RelayAccount = keyof typeof RELAY_ACCOUNTS;

/** Device and client names on the relay (the admin protocol's NAME). */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * The entrypoint prints this line (with more after it) once sshd LISTENS on the container
 * port, not before: whoever starts a relay waits for it, then connects at once.
 */
export const RELAY_READY_LINE = `rtunneld: ready: sshd listening on port ${RELAY_CONTAINER_PORT}`;

/** The entrypoint's exit codes. */
export const RELAY_EXIT = {
  portRange: 10,
  adminKeys: 11,
  hostKey: 12,
  registry: 13,
  sshdConfig: 14,
  /** sshd, the reaper or the connection log reader ended: the restart policy brings all back */
  supervisedEnded: 15,
  /** a connection limit or the jump idle timeout in the env is not a valid value */
  settings: 16,
  /** the user CA keys or the KRL in the state volume do not read (a revocation is never dropped silently) */
  caState: 17,
} as const;
