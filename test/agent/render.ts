// Pure renderers for the agent tests: the device's files (what provisioning writes) and the
// laptop's ssh_config (what provisioning's writer produces, reduced to the two hosts).

export interface AgentEnv {
  relayHost: string;
  relayPort: number;
  forwardPort: number;
  target?: string;
}

/** /etc/rtunnel/rtunnel.env */
export function renderAgentEnv(e: AgentEnv): string {
  const lines = [`RELAY_HOST=${e.relayHost}`, `RELAY_PORT=${e.relayPort}`, `FORWARD_PORT=${e.forwardPort}`];
  if (e.target) lines.push(`TARGET=${e.target}`);
  return `${lines.join("\n")}\n`;
}

/** One known_hosts line: `[host]:port type blob` (plain `host` on port 22), comment dropped. */
export function renderKnownHostsLine(host: string, port: number, publicKey: string): string {
  const name = port === 22 ? host : `[${host}]:${port}`;
  return `${name} ${publicKey.trim().split(/\s+/).slice(0, 2).join(" ")}\n`;
}

export function renderLaptopConfig(o: { relayHost: string; relayPort: number; forwardPort: number; identity: string }): string {
  return [
    "Host relay",
    `  HostName ${o.relayHost}`,
    `  Port ${o.relayPort}`,
    "  User jump",
    "Host raspi",
    "  HostName 127.0.0.1",
    `  Port ${o.forwardPort}`,
    "  User pi",
    "  HostKeyAlias raspi",
    "  ProxyJump relay",
    "Host *",
    `  IdentityFile ${o.identity}`,
    "  IdentitiesOnly yes",
    "  BatchMode yes",
    "  StrictHostKeyChecking yes",
    "  UserKnownHostsFile /root/.ssh/known_hosts",
    "  ConnectTimeout 60",
    "",
  ].join("\n");
}
