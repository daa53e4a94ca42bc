// The relay's admin protocol (DESIGN.md "Admin protocol") over ssh admin@relay, host key pinned
// to the relay facts. Each call is one command; JSON on stdout; a one-line error on stderr.
import type { NodeSSH } from "node-ssh";
import { ExitError, EXIT } from "./errors.ts";
import type { RelayFacts } from "./relayFacts.ts";
import { connectPinned, type Credentials } from "./ssh.ts";
import { show } from "./validate.ts";

export interface RelayEntry {
  name: string;
  kind: "device" | "client" | string;
  port?: number;
  fingerprint: string;
  online?: boolean;
  connectedSince?: string | null;
  lastSeen?: string | null;
  devices?: string[];
  /** a client granted every device */
  all?: boolean;
}

/** One line of the relay's `audit`: a registry change or a connection the key lookup saw. */
export interface AuditEvent {
  time: string;
  type: "change" | "connection" | string;
  /** changes: add-device, add-client, remove */
  verb?: string;
  name?: string;
  kind?: string;
  port?: number;
  fingerprint?: string;
  replaced?: string;
  devices?: string[];
  all?: boolean;
  /** changes: the admin connection's source address */
  from?: string;
  /** connections: tunnel (a device) or jump (a laptop) */
  account?: string;
  /** connections: the registry's name for the key then, "device:NAME:PORT" / "client:NAME", or null (refused) */
  key?: string | null;
  pid?: number;
}

/**
 * An ssh connection to the relay with its host key pinned to the relay facts: the admin
 * account (RelayAdmin) and the jump account (a device through its tunnel) both come here.
 */
export async function connectRelay(facts: RelayFacts, creds: Credentials, account: { username: string; what: string; onAuthFailed: () => ExitError }): Promise<NodeSSH> {
  const where = `${facts.host}:${facts.port}`;
  const { ssh } = await connectPinned(
    {
      what: account.what,
      host: facts.host,
      port: facts.port,
      username: account.username,
      pin: facts.hostKey.fingerprint,
      onUnknown: () => undefined,
      onMismatch: (k) =>
        new ExitError(EXIT.hostKey, `the relay at ${where} shows host key ${k.fingerprint}, not the pinned ${facts.hostKey.fingerprint} from ${facts.source}: check the relay facts (pulumi stack output) before trusting it`),
      onAuthFailed: account.onAuthFailed,
    },
    creds,
  );
  return ssh;
}

/** How long a command keeps retrying to open its channel on a connection that is up. */
export const CHANNEL_RETRY_MS = 30_000;

export class RelayAdmin {
  private constructor(
    private readonly ssh: NodeSSH,
    readonly facts: RelayFacts,
  ) {}

  static async connect(facts: RelayFacts, creds: Credentials): Promise<RelayAdmin> {
    const ssh = await connectRelay(facts, creds, {
      username: "admin",
      what: "the relay",
      onAuthFailed: () =>
        new ExitError(EXIT.relay, `the relay at ${facts.host}:${facts.port} refused the admin key (${creds.identityFile ?? "ssh-agent"}): add its public key to the stack's adminPublicKeys or pass --identity`),
    });
    return new RelayAdmin(ssh, facts);
  }

  /** Runs one admin command; its JSON answer, or an ExitError with the relay's own line. */
  async call<T>(argv: readonly string[], stdin?: string): Promise<T> {
    // The admin account allows one session at a time (MaxSessions 1), and the server may not
    // have freed the previous command's channel yet when the next one opens: retry, up to a
    // deadline long enough for a relay on a busy machine.
    let r;
    const deadline = Date.now() + CHANNEL_RETRY_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        r = await this.ssh.execCommand(argv.join(" "), { stdin });
        break;
      } catch (e) {
        if (Date.now() > deadline || !/open failure|open failed/i.test((e as Error).message)) throw e;
        await new Promise((res) => setTimeout(res, Math.min(100 * attempt, 1000)));
      }
    }
    if (r.code !== 0) {
      const line = r.stderr.trim().split("\n").pop() || `exit ${r.code}`;
      throw new ExitError(EXIT.relay, `the relay refused ${argv[0]}: ${line}`);
    }
    try {
      return JSON.parse(r.stdout) as T;
    } catch {
      throw new ExitError(EXIT.relay, `the relay's answer to ${argv[0]} is not JSON: ${show(r.stdout)}`);
    }
  }

  list(): Promise<RelayEntry[]> {
    return this.call<RelayEntry[]>(["list"]);
  }

  addDevice(name: string, keyLine: string, o: { replace?: boolean } = {}): Promise<{ name: string; port: number; fingerprint: string }> {
    return this.call(["add-device", name, ...(o.replace ? ["--replace"] : [])], `${keyLine}\n`);
  }

  /** `sessionsEnded` is false when the relay's reaper did not confirm the live sessions ended. */
  remove(name: string): Promise<{ removed: string; sessionsEnded?: boolean }> {
    return this.call(["remove", name]);
  }

  audit(limit = 100000): Promise<AuditEvent[]> {
    return this.call<AuditEvent[]>(["audit", "--limit", String(Math.min(limit, 999999))]);
  }

  addClient(name: string, keyLine: string, devices: readonly string[]): Promise<{ name: string; devices: string[] }> {
    return this.call(["add-client", name, "--devices", devices.join(",")], `${keyLine}\n`);
  }

  dispose(): void {
    this.ssh.dispose();
  }
}

/** The one line to show when `remove` could not confirm that live sessions ended. */
export function unconfirmedCutWarning(name: string, removed: { sessionsEnded?: boolean }): string | undefined {
  if (removed.sessionsEnded !== false) return undefined;
  return `warning: the relay refuses ${name}'s key from now on, but did not confirm that its open sessions ended: restart the relay container to be sure`;
}
