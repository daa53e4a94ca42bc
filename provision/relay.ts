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

export class RelayAdmin {
  private constructor(
    private readonly ssh: NodeSSH,
    readonly facts: RelayFacts,
  ) {}

  static async connect(facts: RelayFacts, creds: Credentials): Promise<RelayAdmin> {
    const where = `${facts.host}:${facts.port}`;
    const { ssh } = await connectPinned(
      {
        what: "the relay",
        host: facts.host,
        port: facts.port,
        username: "admin",
        pin: facts.hostKey.fingerprint,
        onUnknown: () => undefined,
        onMismatch: (k) =>
          new ExitError(EXIT.hostKey, `the relay at ${where} shows host key ${k.fingerprint}, not the pinned ${facts.hostKey.fingerprint} from ${facts.source}: check the relay facts (pulumi stack output) before trusting it`),
        onAuthFailed: () =>
          new ExitError(EXIT.relay, `the relay at ${where} refused the admin key (${creds.identityFile ?? "ssh-agent"}): add its public key to the stack's adminPublicKeys or pass --identity`),
      },
      creds,
    );
    return new RelayAdmin(ssh, facts);
  }

  /** Runs one admin command; its JSON answer, or an ExitError with the relay's own line. */
  async call<T>(argv: readonly string[], stdin?: string): Promise<T> {
    const r = await this.ssh.execCommand(argv.join(" "), { stdin });
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

  addDevice(name: string, keyLine: string): Promise<{ name: string; port: number; fingerprint: string }> {
    return this.call(["add-device", name], `${keyLine}\n`);
  }

  addClient(name: string, keyLine: string, devices: readonly string[]): Promise<{ name: string; devices: string[] }> {
    return this.call(["add-client", name, "--devices", devices.join(",")], `${keyLine}\n`);
  }

  dispose(): void {
    this.ssh.dispose();
  }
}
