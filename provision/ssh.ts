// SSH connections with the server's host key pinned. ssh2 accepts any host key unless told
// otherwise, so every connection goes through `connectPinned`, whose hostVerifier compares
// the key's SHA256 fingerprint with the pin (or records it for a first contact the user
// allowed with --accept-new).
import { readFile } from "node:fs/promises";
import { NodeSSH } from "node-ssh";
import sshpk from "sshpk";
import { ExitError, EXIT } from "./errors.ts";
import { publicKeyFromBlob, type PublicKey } from "../lib/keys.ts";

export interface Credentials {
  /** private key file (unencrypted, or the agent holds it) */
  identityFile?: string;
  /** ssh-agent socket (SSH_AUTH_SOCK), or "pageant" on Windows */
  agent?: string;
}

export interface PinnedTarget {
  /** for messages: "the device raspi", "the relay" */
  what: string;
  host: string;
  port: number;
  username: string;
  /** the fingerprint the server must show; undefined = accept and report (only with --accept-new) */
  pin?: string;
  /** what to tell the user when there is no pin */
  onUnknown: (key: PublicKey) => ExitError | undefined;
  /** what to tell the user on a mismatch */
  onMismatch: (key: PublicKey) => ExitError;
  /** what to tell the user when authentication fails */
  onAuthFailed: () => ExitError;
  /** an already open stream to the server (a channel forwarded through the relay) */
  sock?: NodeJS.ReadableStream;
}

export interface Pinned {
  ssh: NodeSSH;
  hostKey: PublicKey;
}

async function privateKeyOf(identityFile: string | undefined): Promise<string | undefined> {
  if (!identityFile) return undefined;
  const text = await readFile(identityFile, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    sshpk.parsePrivateKey(text, "auto");
    return text;
  } catch {
    return undefined; // encrypted (needs a passphrase) or not a key: leave it to the agent
  }
}

export async function connectPinned(target: PinnedTarget, creds: Credentials): Promise<Pinned> {
  const ssh = new NodeSSH();
  let seen: PublicKey | undefined;
  let refusal: ExitError | undefined;
  const privateKey = await privateKeyOf(creds.identityFile);
  if (!privateKey && !creds.agent) {
    throw new ExitError(EXIT.usage, `no usable key for ${target.what}: ${creds.identityFile ?? "--identity"} is missing or encrypted and no ssh-agent runs (SSH_AUTH_SOCK)`);
  }
  try {
    await ssh.connect({
      host: target.host,
      port: target.port,
      ...(target.sock ? { sock: target.sock as never } : {}),
      username: target.username,
      privateKey,
      agent: creds.agent,
      // Only a hang guard: a handshake on a busy 2-core relay can take seconds.
      readyTimeout: 90_000,
      algorithms: { serverHostKey: ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256"] },
      hostVerifier: (blob: Buffer) => {
        try {
          seen = publicKeyFromBlob(blob);
        } catch (e) {
          refusal = new ExitError(EXIT.hostKey, `${target.what} shows an unsupported host key: ${(e as Error).message}`);
          return false;
        }
        if (target.pin === undefined) refusal = target.onUnknown(seen);
        else if (target.pin !== seen.fingerprint) refusal = target.onMismatch(seen);
        return refusal === undefined;
      },
    });
  } catch (e) {
    ssh.dispose();
    if (refusal) throw refusal;
    const err = e as NodeJS.ErrnoException & { level?: string };
    if (/authentication methods failed/i.test(err.message)) throw target.onAuthFailed();
    const why = err.code ?? err.message;
    throw new ExitError(EXIT.device, `can't reach ${target.what} at ${target.host}:${target.port} (${why})`);
  }
  return { ssh, hostKey: seen! };
}
