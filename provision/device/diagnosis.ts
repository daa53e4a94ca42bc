// Why a device's tunnel did not come up, from what the device's Docker says about its agent
// (state, exit code, restart count) and the agent's last log lines (images/rtunnel/README.md:
// one line per state change, FATAL lines with their own exit codes). Pure: enrollment and
// the demo gather the facts over the connection they already hold and print the result.

export interface AgentFacts {
  /** undefined: there is no agent container at all */
  state?: { status: string; running: boolean; exitCode: number; restartCount: number };
  /** the agent's last log lines, oldest first */
  log: readonly string[];
  /** where the device was told to reach the relay */
  relay: { host: string; port: number };
  /** the relay's view of the device's tunnel, when it was read: listening, and what answered through it */
  tunnel?: { listening: boolean; banner: string | null };
}

export interface AgentDiagnosis {
  /** one line: the agent's state */
  state: string;
  /** one line: the likely cause and its fix */
  fix: string;
}

/** The agent's exit codes (images/rtunnel/README.md) that mean "fix the configuration". */
const CONFIG_CODES: Record<number, string> = {
  64: "a bad command line",
  65: "a malformed /etc/rtunnel/rtunnel.env",
  66: "a missing file in /etc/rtunnel",
  67: "an unusable device key",
  68: "no pinned relay host key in /etc/rtunnel/known_hosts",
};

export function diagnoseAgent(f: AgentFacts): AgentDiagnosis {
  const s = f.state;
  const state = s
    ? `agent container ${s.status}${s.running ? "" : `, exit code ${s.exitCode}`}, restarted ${s.restartCount} time${s.restartCount === 1 ? "" : "s"}`
    : "no agent container";
  const text = f.log.join("\n");
  const fatal = [...f.log].reverse().find((l) => l.includes("FATAL:"));
  const where = `${f.relay.host}:${f.relay.port}`;
  let fix: string;
  if (!s) fix = "the agent container was not created: re-run enrollment";
  else if (f.tunnel?.listening && !f.tunnel.banner) {
    fix = "the tunnel is up on the relay, but the device's sshd does not answer through it: check that sshd runs on the device and listens on its loopback (127.0.0.1:22, the agent's target), then re-run enrollment";
  }
  else if (s.exitCode === 69 || /ssh cannot run as/.test(text)) {
    fix = "ssh cannot run inside the agent image (see the FATAL line): rebuild the agent image on a base whose root directory is 0755, then re-run enrollment";
  } else if (!s.running && CONFIG_CODES[s.exitCode]) {
    fix = `the agent stopped on ${CONFIG_CODES[s.exitCode]}${fatal ? ` (${fatal.replace(/^.*FATAL: /, "")})` : ""}: re-run enrollment, which rewrites /etc/rtunnel`;
  } else if (/REMOTE HOST IDENTIFICATION HAS CHANGED|refused: the relay's host key/.test(text)) {
    fix = `the relay at ${where} shows the device another host key than the one pinned: check the relay facts (and that ${where} is your relay) before re-running enrollment`;
  } else if (/Permission denied \(publickey\)/.test(text)) {
    fix = "the relay refuses the device's key: it is not registered there (revoked, or another relay), or the key already holds its limit of live connections (the relay's `audit` says which): re-run enrollment";
  } else if (/remote port forwarding failed/.test(text)) {
    fix = "the relay still holds the device's port for an earlier session: it frees it within about 15 s; re-run enrollment";
  } else if (/Could not resolve hostname|Name or service not known|Temporary failure in name resolution/.test(text)) {
    fix = `the device cannot resolve ${f.relay.host}: give the relay facts an address the device can resolve (deviceSide in --relay FILE), or fix the device's DNS`;
  } else if (/Connection refused|Connection timed out|No route to host|Network is unreachable|Connection closed by|not responding/.test(text)) {
    fix = `the device cannot reach the relay at ${where}: check the device's network and firewall, and that this is the address devices use (deviceSide in --relay FILE)`;
  } else if (!s.running) {
    fix = "the agent is not running: start it (sudo docker start rtunnel) or re-run enrollment";
  } else {
    fix = "the agent runs but has not held the tunnel yet: re-run enrollment with a longer --timeout";
  }
  return { state, fix };
}
