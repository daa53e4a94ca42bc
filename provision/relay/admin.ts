// The relay's admin protocol over `ssh admin@relay`, host key pinned to the relay facts: one
// method per verb, every answer checked against its schema (protocol.ts) before anything
// reads it, a refusal turned into one ExitError line with the relay's own words.
import type { NodeSSH } from "node-ssh";
import type { z } from "zod";
import { RELAY_CONNECTION_LIMITS } from "../../lib/contract/relay.ts";
import { keyLine, type PublicKey } from "../../lib/keys.ts";
import { show } from "../../lib/input.ts";
import { ExitError, EXIT } from "../errors.ts";
import { connectPinned, type Credentials } from "../ssh.ts";
import type { RelayFacts } from "./facts.ts";
import {
  ANSWERS,
  HostKeyAnswer,
  type AddClientAnswer,
  type AddDeviceAnswer,
  type AuditEvent,
  type CaAnswer,
  type CertificateListing,
  type Grant,
  type JsonVerb,
  type Listing,
  type RemoveAnswer,
  type SetKrlAnswer,
  type SetUserCaAnswer,
} from "./protocol.ts";

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
        new ExitError(
          EXIT.relay,
          `the relay at ${facts.host}:${facts.port} refused the admin key (${creds.identityFile ?? "ssh-agent"}): add its public key to the stack's adminPublicKeys or pass --identity (a registered admin key is refused too while it holds its limit of ${RELAY_CONNECTION_LIMITS.admin.max} live connections: let one end)`,
        ),
    });
    return new RelayAdmin(ssh, facts);
  }

  /** One admin command; its stdout, or an ExitError with the relay's own line. */
  private async exec(argv: readonly string[], stdin?: string): Promise<string> {
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
    return r.stdout;
  }

  private async call<V extends JsonVerb>(verb: V, args: readonly string[], stdin?: string): Promise<z.infer<(typeof ANSWERS)[V]>> {
    const out = await this.exec([verb, ...args], stdin);
    let json: unknown;
    try {
      json = JSON.parse(out);
    } catch {
      throw new ExitError(EXIT.relay, `the relay's answer to ${verb} is not JSON: ${show(out)}`);
    }
    const parsed = ANSWERS[verb].safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ExitError(EXIT.relay, `the relay's answer to ${verb} is not what this CLI understands (${issue?.path.join(".") || "answer"}: ${issue?.message}): is the relay image older or newer than this checkout?`);
    }
    return parsed.data as z.infer<(typeof ANSWERS)[V]>;
  }

  /** The registry's devices and clients. */
  async list(): Promise<Listing[]> {
    return (await this.listWithCertificates()).registry;
  }

  /** The registry's devices and clients, and the certificates with live logins on `jump`. */
  async listWithCertificates(): Promise<{ registry: Listing[]; certificates: CertificateListing[] }> {
    const rows = await this.call("list", []);
    return {
      registry: rows.filter((r): r is Listing => r.kind !== "certificate"),
      certificates: rows.filter((r): r is CertificateListing => r.kind === "certificate"),
    };
  }

  /**
   * The user CA keys `jump` trusts from now on (public key lines; [] trusts none). Live
   * certificate logins signed by a CA that is no longer trusted end.
   */
  setUserCa(keys: readonly PublicKey[]): Promise<SetUserCaAnswer> {
    return this.call("set-user-ca", [], keys.map((k) => `${keyLine(k)}\n`).join(""));
  }

  /**
   * The revocation list (the bytes of `ssh-keygen -k`'s KRL file), for every account. Live
   * logins with a certificate it revokes end.
   */
  setKrl(krl: Uint8Array): Promise<SetKrlAnswer> {
    return this.call("set-krl", [], `${Buffer.from(krl).toString("base64")}\n`);
  }

  /** What the relay trusts now: the user CA keys' fingerprints and the KRL set (null: none). */
  ca(): Promise<CaAnswer> {
    return this.call("ca", []);
  }

  addDevice(name: string, key: PublicKey, o: { replace?: boolean } = {}): Promise<AddDeviceAnswer> {
    return this.call("add-device", [name, ...(o.replace ? ["--replace"] : [])], `${keyLine(key)}\n`);
  }

  /** Sets the client's grant exactly (it replaces the earlier one). */
  addClient(name: string, key: PublicKey, grant: Grant): Promise<AddClientAnswer> {
    return this.call("add-client", [name, ...(grant === "all" ? ["--all"] : ["--devices", grant.join(",")])], `${keyLine(key)}\n`);
  }

  remove(name: string): Promise<RemoveAnswer> {
    return this.call("remove", [name]);
  }

  audit(limit = 100000): Promise<AuditEvent[]> {
    return this.call("audit", ["--limit", String(Math.min(limit, 999999))]);
  }

  async hostKey(): Promise<string> {
    const line = (await this.exec(["host-key"])).trim();
    if (!HostKeyAnswer.safeParse(line).success) throw new ExitError(EXIT.relay, `the relay's answer to host-key is not a public key line: ${show(line)}`);
    return line;
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
