// The fleet's certificate authority on the operator's machine: a user CA (signs laptops'
// keys) and a host CA (signs devices' host keys) under SSH_DIR/rtunnel-ca, private halves
// encrypted with a passphrase. Made by `ssh-keygen` (staged in a sibling directory, then
// renamed into place: never half-written); used ONLY through ssh-agent (`ssh-keygen -U -s
// CA.pub`): node never reads a CA private key, and nothing here sends one anywhere.
//
// What other modules call (provision/ca/README.md): loadCa/requireCa, signUserCert,
// signHostKey, inspectCertificate, and from revocation.ts currentKrl/revoke.
import { randomInt } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  caPaths,
  HOST_CERT_LIFETIME,
  keyId,
  userCertPrincipals,
  validityWindow,
  type IssuedCert,
} from "../../lib/contract/ca.ts";
import { InputError } from "../../lib/input.ts";
import { keyLine, parsePublicKey, type PublicKey } from "../../lib/keys.ts";
import { CommandError, run } from "../../lib/proc.ts";
import { ExitError, EXIT } from "../errors.ts";
import { configPath } from "../validate.ts";
import { laptopPaths } from "../laptop/files.ts";
import { hostKeyAlias } from "../laptop/model.ts";
import { withAskpass } from "./askpass.ts";
import { certStatus, parseCertListing, type CertInfo } from "./certinfo.ts";
import { generateArgv, inspectArgv, krlArgv, newSerial, RSA_SIGNATURE, signArgv, type CaAlgorithm } from "./keygen.ts";
import { appendIssued, EMPTY_REVOKED, readIssued, type CaPaths } from "./records.ts";

export type { CaPaths } from "./records.ts";

/** The two CAs of a fleet, by their public halves. */
export interface Ca {
  paths: CaPaths;
  algorithm: CaAlgorithm;
  userCa: PublicKey;
  hostCa: PublicKey;
}

export type CaRole = "user" | "host";

const COMMENT: Record<CaRole, string> = { user: "rtunnel-user-ca", host: "rtunnel-host-ca" };
const KEY_FILES = ["userCa", "userCaPub", "hostCa", "hostCaPub"] as const;

/** The ssh dir the CA lives under: --ssh-dir, else ~/.ssh. */
export const sshDirOf = (o: { sshDir?: string; home?: string }): string => laptopPaths(o).sshDir;

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? false : Promise.reject(e)),
  );
}

async function readCaKey(file: string, what: string): Promise<PublicKey> {
  const text = await readFile(file, "utf8").catch((e: NodeJS.ErrnoException) => {
    throw new ExitError(EXIT.usage, `can't read ${file}: ${e.code ?? e.message}`);
  });
  try {
    return parsePublicKey(text.trim(), what);
  } catch (e) {
    throw new ExitError(EXIT.usage, `${file} is not a public key (${(e as Error).message}): the CA directory was changed by hand`);
  }
}

/**
 * The fleet's CA under `sshDir`, or undefined when there is none (a fleet without
 * certificates). A CA directory missing some of its key files stops with one line.
 */
export async function loadCa(sshDir: string): Promise<Ca | undefined> {
  const paths = caPaths(sshDir);
  if (!(await exists(paths.dir))) return undefined;
  const present = await Promise.all(KEY_FILES.map((k) => exists(paths[k])));
  if (present.every((p) => !p)) return undefined;
  if (!present.every(Boolean)) {
    const missing = KEY_FILES.filter((_, i) => !present[i]).map((k) => paths[k]);
    throw new ExitError(EXIT.usage, `the CA in ${paths.dir} is incomplete (missing ${missing.join(", ")}): restore it from your backup; \`ca init\` never overwrites a CA`);
  }
  const userCa = await readCaKey(paths.userCaPub, "the user CA");
  const hostCa = await readCaKey(paths.hostCaPub, "the host CA");
  const algorithm: CaAlgorithm = userCa.type === "ssh-rsa" ? "rsa" : "ed25519";
  if ((hostCa.type === "ssh-rsa") !== (algorithm === "rsa") || !["ssh-ed25519", "ssh-rsa"].includes(userCa.type)) {
    throw new ExitError(EXIT.usage, `the CA in ${paths.dir} has keys of types ${userCa.type} and ${hostCa.type}: the kit makes both ed25519 or both RSA`);
  }
  return { paths, algorithm, userCa, hostCa };
}

/** The CA, or one line saying how to make one. */
export async function requireCa(sshDir: string): Promise<Ca> {
  const ca = await loadCa(sshDir);
  if (!ca) throw new ExitError(EXIT.usage, `no fleet CA in ${caPaths(sshDir).dir}: make one with \`npm run ca -- init\` (with --ssh-dir when you use one)`);
  return ca;
}

export interface InitResult {
  created: boolean;
  dir: string;
  algorithm: CaAlgorithm;
  userCa: { fingerprint: string; key: string };
  hostCa: { fingerprint: string; key: string };
  /** the command that loads both CAs into ssh-agent */
  sshAdd: string;
}

/** The `ssh-add` line for a CA directory, spelled with ~/ where it is under home. */
export function sshAddLine(p: CaPaths, home = os.homedir()): string {
  const spell = (f: string) => {
    try {
      return configPath(f, home);
    } catch {
      return JSON.stringify(f);
    }
  };
  return `ssh-add ${spell(p.userCa)} ${spell(p.hostCa)}`;
}

function initResult(ca: Ca, created: boolean, home?: string): InitResult {
  return {
    created,
    dir: ca.paths.dir,
    algorithm: ca.algorithm,
    userCa: { fingerprint: ca.userCa.fingerprint, key: keyLine(ca.userCa, COMMENT.user) },
    hostCa: { fingerprint: ca.hostCa.fingerprint, key: keyLine(ca.hostCa, COMMENT.host) },
    sshAdd: sshAddLine(ca.paths, home),
  };
}

/**
 * What `ca init` reports for the CA already under `sshDir` (`created: false`), or undefined
 * when there is none; a CA of the other algorithm than the one asked for is refused.
 */
export async function existingCa(o: { sshDir: string; algorithm?: CaAlgorithm; home?: string }): Promise<InitResult | undefined> {
  const existing = await loadCa(o.sshDir);
  if (!existing) return undefined;
  if (o.algorithm && existing.algorithm !== o.algorithm) {
    throw new ExitError(EXIT.usage, `the CA in ${existing.paths.dir} is ${existing.algorithm}, not ${o.algorithm}: nothing was changed (init never replaces a CA; see provision/ca/README.md for rotation)`);
  }
  return initResult(existing, false, o.home);
}

/**
 * Makes the user CA and the host CA under `sshDir`/rtunnel-ca, encrypted with `passphrase`,
 * with an empty revocation list and its KRL (version 1). Everything is made in a staging
 * directory beside it and renamed into place at once. When a CA is already there, nothing
 * changes (`created: false`); one of the other algorithm is refused.
 */
export async function initCa(o: { sshDir: string; passphrase: string; algorithm?: CaAlgorithm; home?: string }): Promise<InitResult> {
  const algorithm = o.algorithm ?? "ed25519";
  const paths = caPaths(o.sshDir);
  const existing = await existingCa(o);
  if (existing) return existing;
  if (!o.passphrase) throw new InputError("a CA is never made without a passphrase");
  // A directory with other things in it but no CA keys (issued.jsonl of a lost CA?) is not ours to fill.
  if (await exists(paths.dir)) {
    const left = await readdir(paths.dir);
    if (left.length) throw new ExitError(EXIT.usage, `${paths.dir} exists without a CA in it (${left.slice(0, 3).join(", ")}${left.length > 3 ? ", ..." : ""}): move it away first; nothing was changed`);
  }
  await mkdir(o.sshDir, { recursive: true, mode: 0o700 });
  const stage = await mkdtemp(path.join(o.sshDir, `.${path.basename(paths.dir)}.stage-`)); // 0700
  try {
    const inStage = (f: string) => path.join(stage, path.basename(f));
    for (const role of ["user", "host"] as const) {
      const argv = generateArgv({ file: inStage(role === "user" ? paths.userCa : paths.hostCa), algorithm, comment: COMMENT[role] });
      // ssh-keygen asks twice for a new key's passphrase (and its confirmation).
      await withAskpass(o.passphrase, (env) => run("ssh-keygen", argv, { env, timeoutMs: 120_000 }), { answers: 2 });
    }
    await writeFile(inStage(paths.revoked), `${JSON.stringify(EMPTY_REVOKED, null, 2)}\n`, { mode: 0o600 });
    await run("ssh-keygen", krlArgv({ out: inStage(paths.krl), version: EMPTY_REVOKED.version, caPub: inStage(paths.userCaPub) }));
    try {
      await rename(stage, paths.dir); // atomic; replaces an empty directory
    } catch (e) {
      // Another init finished first: that CA stands.
      const other = await loadCa(o.sshDir);
      if (other) return initResult(other, false, o.home);
      throw e;
    }
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
  return initResult((await loadCa(o.sshDir))!, true, o.home);
}

// --- ssh-agent -----------------------------------------------------------------------------

/** The public keys ssh-agent holds at `sock`; one line when it can't be reached. */
export async function agentKeys(sock: string | undefined): Promise<PublicKey[]> {
  if (!sock) throw new ExitError(EXIT.usage, "no ssh-agent: SSH_AUTH_SOCK is not set; start one (eval \"$(ssh-agent)\") and load the CA into it with ssh-add");
  const r = await run("ssh-add", ["-L"], { check: false, env: { ...process.env, SSH_AUTH_SOCK: sock }, timeoutMs: 30_000 });
  if (r.code === 1) return []; // "The agent has no identities."
  if (r.code !== 0) throw new ExitError(EXIT.usage, `can't reach ssh-agent at ${sock}: ${(r.stderr.trim().split("\n").pop() ?? "").trim() || `exit ${r.code}`}`);
  const out: PublicKey[] = [];
  for (const line of r.stdout.split("\n")) {
    try {
      out.push(parsePublicKey(line.trim(), "agent key", { minRsaBits: 0 }));
    } catch {
      // certificates and key types the kit does not use: not a CA of ours
    }
  }
  return out;
}

/** Whether each CA is loaded in ssh-agent (false for both when there is no agent). */
export async function caInAgent(ca: Ca, sock: string | undefined): Promise<Record<CaRole, boolean>> {
  const keys = await agentKeys(sock).catch(() => [] as PublicKey[]);
  const has = (k: PublicKey) => keys.some((a) => a.fingerprint === k.fingerprint);
  return { user: has(ca.userCa), host: has(ca.hostCa) };
}

/** One line, with the fix, when the CA of `role` is not loaded in the agent at `sock`. */
export async function requireInAgent(ca: Ca, role: CaRole, sock: string | undefined): Promise<void> {
  const keys = await agentKeys(sock);
  const key = role === "user" ? ca.userCa : ca.hostCa;
  if (!keys.some((k) => k.fingerprint === key.fingerprint)) {
    const file = role === "user" ? ca.paths.userCa : ca.paths.hostCa;
    throw new ExitError(EXIT.usage, `the ${role} CA (${key.fingerprint}) is not loaded in ssh-agent: run ssh-add ${file}`);
  }
}

/**
 * Loads both CAs into the agent at `sock` (ssh-add, the passphrase through SSH_ASKPASS),
 * for `lifetimeSeconds` when given (ssh-add -t). A wrong passphrase is one line.
 */
export async function addCaToAgent(ca: Ca, o: { passphrase: string; sock: string | undefined; lifetimeSeconds?: number }): Promise<void> {
  if (!o.sock) await agentKeys(o.sock); // the one line about a missing agent
  // The passphrase first (ssh-keygen -y prints the public half only): ssh-add says nothing
  // on stderr about a wrong one when askpass answers it.
  for (const file of [ca.paths.userCa, ca.paths.hostCa]) {
    const check = await withAskpass(o.passphrase, (env) => run("ssh-keygen", ["-y", "-f", file], { check: false, env, timeoutMs: 60_000 }));
    if (check.code !== 0) {
      throw new ExitError(EXIT.usage, /passphrase/i.test(check.stderr) ? "ssh-add could not load the CA: wrong passphrase" : `can't read ${file}: ${check.stderr.trim().split("\n").pop() ?? `exit ${check.code}`}`);
    }
  }
  const args = [...(o.lifetimeSeconds ? ["-t", String(o.lifetimeSeconds)] : []), ca.paths.userCa, ca.paths.hostCa];
  const r = await withAskpass(o.passphrase, (env) => run("ssh-add", args, { check: false, env: { ...env, SSH_AUTH_SOCK: o.sock }, timeoutMs: 60_000 }));
  if (r.code !== 0) {
    const why = r.stderr.trim().split("\n").filter(Boolean).pop() ?? `exit ${r.code}`;
    throw new ExitError(EXIT.usage, `ssh-add could not load the CA: ${why}`);
  }
}

// --- signing -------------------------------------------------------------------------------

/** A certificate just signed: its line, what ssh-keygen -L reads in it, and its record. */
export interface SignedCert {
  /** the certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA... comment`) */
  certificate: string;
  info: CertInfo;
  record: IssuedCert;
}

/** What ssh-keygen -L reads in a certificate (a file, or the certificate line itself). */
export async function inspectCertificate(o: { file: string } | { text: string }): Promise<CertInfo> {
  let dir: string | undefined;
  try {
    let file: string;
    if ("file" in o) file = o.file;
    else {
      dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-cert-"));
      file = path.join(dir, "cert.pub");
      await writeFile(file, o.text.endsWith("\n") ? o.text : `${o.text}\n`);
    }
    const r = await run("ssh-keygen", inspectArgv(file), { check: false, env: { ...process.env, TZ: "UTC" } });
    if (r.code !== 0) throw new ExitError(EXIT.usage, `${"file" in o ? o.file : "that text"} is not an SSH certificate (${r.stderr.trim().split("\n").pop()})`);
    return parseCertListing(r.stdout);
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

async function uniqueSerial(p: CaPaths, now: Date): Promise<bigint> {
  const used = new Set((await readIssued(p)).map((r) => r.serial));
  for (;;) {
    const s = newSerial(now, randomInt(0, 2 ** 32));
    if (!used.has(String(s))) return s;
  }
}

interface SignOptions {
  ca: Ca;
  role: CaRole;
  key: PublicKey;
  name: string;
  principals: string[];
  lifetimeSeconds: number;
  now: Date;
  /** the ssh-agent holding the CA (default SSH_AUTH_SOCK) */
  agentSock?: string;
}

async function sign(o: SignOptions): Promise<SignedCert> {
  const sock = o.agentSock ?? process.env.SSH_AUTH_SOCK;
  await requireInAgent(o.ca, o.role, sock);
  const window = validityWindow(o.now, o.lifetimeSeconds);
  const serial = await uniqueSerial(o.ca.paths, o.now);
  const caPub = o.role === "user" ? o.ca.paths.userCaPub : o.ca.paths.hostCaPub;
  const caKey = o.role === "user" ? o.ca.userCa : o.ca.hostCa;
  const dir = await mkdtemp(path.join(os.tmpdir(), "rtunnel-sign-"));
  try {
    const keyFile = path.join(dir, "key.pub");
    await writeFile(keyFile, `${keyLine(o.key, `rtunnel-${o.name}`)}\n`);
    const argv = signArgv({ caPub, caAlgorithm: o.ca.algorithm, keyFile, name: o.name, serial, principals: o.principals, window, host: o.role === "host" });
    try {
      await run("ssh-keygen", argv, { env: { ...process.env, SSH_AUTH_SOCK: sock }, timeoutMs: 60_000 });
    } catch (e) {
      if (!(e instanceof CommandError)) throw e;
      const why = e.result.stderr.trim().split("\n").filter(Boolean).pop() ?? `exit ${e.result.code}`;
      throw new ExitError(EXIT.usage, `ssh-agent did not sign with the ${o.role} CA: ${why} (is it still loaded? ssh-add -l)`);
    }
    const certFile = path.join(dir, "key-cert.pub");
    const certificate = (await readFile(certFile, "utf8")).trim();
    const info = await inspectCertificate({ file: certFile });
    // The CA's own reading of what it signed must be what was asked: anything else is a bug.
    const same =
      info.kind === o.role &&
      info.serial === String(serial) &&
      info.keyId === keyId(o.name, serial) &&
      info.caFingerprint === caKey.fingerprint &&
      info.keyFingerprint === o.key.fingerprint &&
      JSON.stringify(info.principals) === JSON.stringify(o.principals) &&
      info.validAfter?.getTime() === window.validAfter.getTime() &&
      info.validBefore?.getTime() === window.validBefore.getTime() &&
      (o.ca.algorithm !== "rsa" || info.signatureAlgorithm === RSA_SIGNATURE);
    if (!same) throw new Error(`ssh-keygen signed something else than asked: ${JSON.stringify(info)}`);
    const record: IssuedCert = {
      type: o.role,
      name: o.name,
      serial: String(serial),
      keyId: info.keyId,
      principals: info.principals,
      validAfter: window.validAfter.toISOString(),
      validBefore: window.validBefore.toISOString(),
      keyFingerprint: o.key.fingerprint,
      issuedAt: o.now.toISOString(),
    };
    await appendIssued(o.ca.paths, record);
    return { certificate, info, record };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A user certificate for `key`, granted to `name` for `devices`: principals
 * `rtunnel-grant:A+B` (the relay) and `rtunnel-device:A`, `rtunnel-device:B` (the devices),
 * valid from 5 minutes before `now` for `lifetimeSeconds`; recorded in issued.jsonl. Signed by
 * the user CA in ssh-agent (one line with `ssh-add` when it is not loaded).
 */
export function signUserCert(o: { ca: Ca; key: PublicKey; name: string; devices: readonly string[]; lifetimeSeconds: number; now?: Date; agentSock?: string }): Promise<SignedCert> {
  return sign({ ca: o.ca, role: "user", key: o.key, name: o.name, principals: userCertPrincipals(o.devices), lifetimeSeconds: o.lifetimeSeconds, now: o.now ?? new Date(), agentSock: o.agentSock });
}

/**
 * A host certificate for device `device`'s host key: principal `rtunnel-NAME` (its
 * HostKeyAlias), 90 days from 5 minutes before `now`; recorded in issued.jsonl. The caller
 * installs it and then records it in devices.json (updateDeviceRecord).
 */
export function signHostKey(o: { ca: Ca; device: string; hostKey: PublicKey; now?: Date; agentSock?: string }): Promise<SignedCert> {
  return sign({ ca: o.ca, role: "host", key: o.hostKey, name: o.device, principals: [hostKeyAlias(o.device)], lifetimeSeconds: HOST_CERT_LIFETIME.seconds, now: o.now ?? new Date(), agentSock: o.agentSock });
}

/** A certificate file read back: what it says and whether it is valid at `now`. */
export async function certificateReport(file: string, now = new Date()): Promise<CertInfo & { status: ReturnType<typeof certStatus> }> {
  const info = await inspectCertificate({ file });
  return { ...info, status: certStatus(info, now) };
}
