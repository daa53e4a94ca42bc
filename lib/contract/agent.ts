// The device agent's contract (images/rtunnel/README.md), in one place: what enrollment
// writes on a device and how it starts the agent, what the fixtures write for theirs, and
// the words of the agent's log that the tests and the diagnosis read. The agent script says
// the same things in bash; test/contract.test.ts holds it to these values.
import { hostPattern, knownHostsLine } from "../knownHosts.ts";
import type { PublicKey } from "../keys.ts";
import type { RelayEndpoint } from "./relay.ts";

/** The agent container's name on a device. */
export const AGENT_CONTAINER = "rtunnel";
/** The device's configuration directory, mounted read-only into the agent at the same path. */
export const AGENT_CONF_DIR = "/etc/rtunnel";
export const AGENT_FILES = {
  env: "rtunnel.env",
  /** the device key, made on the device; it never leaves it */
  key: "id_ed25519",
  /** during a key rotation only: the key the relay still holds, offered after the new one */
  previousKey: "id_ed25519.previous",
  knownHosts: "known_hosts",
} as const;
export const agentPath = (file: keyof typeof AGENT_FILES) => `${AGENT_CONF_DIR}/${AGENT_FILES[file]}`;

/** The keys of rtunnel.env (any other is refused by the agent). */
export const AGENT_ENV_KEYS = ["RELAY_HOST", "RELAY_PORT", "FORWARD_PORT", "TARGET"] as const;
/** What the forward reaches on the device when TARGET is not set: its own sshd. */
export const DEFAULT_TARGET = "127.0.0.1:22";

/** The agent's exit codes (a FATAL line each). */
export const AGENT_EXIT = {
  usage: 64,
  env: 65,
  files: 66,
  key: 67,
  pin: 68,
  /** ssh cannot run at all as the agent's user */
  ssh: 69,
  internal: 70,
} as const;

/** The words that open the agent's state lines (`... rtunnel: WORD ...`). */
export const AGENT_STATES = ["connecting", "up", "lost", "refused", "backing off"] as const;
export type AgentState = (typeof AGENT_STATES)[number];

/**
 * Its reconnect backoff: jittered in [d/2, d], d doubling from min to max, reset after
 * `stableS` up; a connection the relay shed before its banner (busy: MaxStartups) waits a
 * random time in [busyMinMs, busyMaxMs], so a fleet spreads over what the relay admits.
 */
export const AGENT_BACKOFF = { minMs: 1000, maxMs: 30_000, stableS: 10, busyMinMs: 1000, busyMaxMs: 20_000 } as const;

/** /etc/rtunnel/rtunnel.env */
export function renderAgentEnv(o: { relay: RelayEndpoint; forwardPort: number; target?: string }): string {
  return [
    "# Written by rtunnel enrollment.",
    `RELAY_HOST=${o.relay.host}`,
    `RELAY_PORT=${o.relay.port}`,
    `FORWARD_PORT=${o.forwardPort}`,
    `TARGET=${o.target ?? DEFAULT_TARGET}`,
    "",
  ].join("\n");
}

/** /etc/rtunnel/known_hosts: the relay's host key, pinned where the device reaches it. */
export function renderAgentKnownHosts(relay: RelayEndpoint, hostKey: Pick<PublicKey, "type" | "base64">): string {
  return `${knownHostsLine({ pattern: hostPattern(relay.host, relay.port), key: hostKey })}\n`;
}

/** `docker` arguments that start the agent on a device (DESIGN.md "Device agent"). */
export function agentRunArgs(image: string): string[] {
  return ["run", "-d", "--name", AGENT_CONTAINER, "--restart", "unless-stopped", "--network", "host", "-v", `${AGENT_CONF_DIR}:${AGENT_CONF_DIR}:ro`, image];
}
