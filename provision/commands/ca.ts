// `ca init`, `ca show`, `ca load`, `ca push`: the fleet's certificate authority on this
// machine (provision/ca/README.md). init makes it (idempotent), show says what it is and
// whether ssh-agent holds it, load puts it in ssh-agent non-interactively (a passphrase
// file), push sends its public half and the KRL to the relay and the devices.
import { formatLifetime, parseLifetime, type DeviceCaRecords } from "../../lib/contract/ca.ts";
import { keyLine } from "../../lib/keys.ts";
import { MIN_PASSPHRASE, obtainPassphrase } from "../ca/askpass.ts";
import { addCaToAgent, caInAgent, certificateReport, existingCa, initCa, loadCa, requireCa, sshAddLine, sshDirOf, type InitResult } from "../ca/ca.ts";
import type { CertInfo } from "../ca/certinfo.ts";
import { krlQueryArgv } from "../ca/keygen.ts";
import { run } from "../../lib/proc.ts";
import { pushKrlToDevices, pushToRelay, type DevicesPush, type RelayPush } from "../ca/push.ts";
import { readDeviceRecords, readIssued, readRevoked } from "../ca/records.ts";
import { currentKrl, krlVersion } from "../ca/revocation.ts";
import { openFleet, readLaptopSide, type FleetOptions } from "./fleet.ts";

export interface CaOptions {
  sshDir?: string;
  home?: string;
  /** the ssh-agent socket (default SSH_AUTH_SOCK) */
  agentSock?: string;
  log?: (line: string) => void;
}

export interface CaInitOptions extends CaOptions {
  passphraseFile?: string;
  rsa?: boolean;
  env?: NodeJS.ProcessEnv;
  /** asks on a terminal (tests pass none: no prompt) */
  prompt?: (question: string) => Promise<string>;
}

/**
 * Makes the user CA and the host CA (ed25519, or RSA with --rsa) under SSH_DIR/rtunnel-ca.
 * When they exist, changes nothing and asks for no passphrase.
 */
export async function caInit(o: CaInitOptions): Promise<InitResult> {
  const sshDir = sshDirOf(o);
  const algorithm = o.rsa ? "rsa" : undefined;
  // A CA that exists is reported as it is, without asking for a passphrase.
  const existing = await existingCa({ sshDir, algorithm, home: o.home });
  if (existing) return existing;
  const passphrase = await obtainPassphrase({ file: o.passphraseFile, env: o.env, confirm: true, minLength: MIN_PASSPHRASE, prompt: o.prompt });
  return initCa({ sshDir, passphrase, algorithm, home: o.home });
}

export interface CaShowResult {
  dir: string;
  algorithm: string;
  userCa: { fingerprint: string; key: string; inAgent: boolean };
  hostCa: { fingerprint: string; key: string; inAgent: boolean };
  sshAdd: string;
  krl: { file: string; version: number | null; revoked: number };
  issued: { user: number; host: number; userValidNow: number };
  devices: DeviceCaRecords;
}

/** What the CA is, whether ssh-agent holds it, its KRL version, and how many certificates it issued. */
export async function caShow(o: CaOptions & { now?: Date }): Promise<CaShowResult> {
  const ca = await requireCa(sshDirOf(o));
  const inAgent = await caInAgent(ca, o.agentSock ?? process.env.SSH_AUTH_SOCK);
  const issued = await readIssued(ca.paths);
  const now = (o.now ?? new Date()).getTime();
  return {
    dir: ca.paths.dir,
    algorithm: ca.algorithm,
    userCa: { fingerprint: ca.userCa.fingerprint, key: keyLine(ca.userCa), inAgent: inAgent.user },
    hostCa: { fingerprint: ca.hostCa.fingerprint, key: keyLine(ca.hostCa), inAgent: inAgent.host },
    sshAdd: sshAddLine(ca.paths, o.home),
    krl: { file: ca.paths.krl, version: (await krlVersion(ca.paths.krl)) ?? null, revoked: (await readRevoked(ca.paths)).revoked.length },
    issued: {
      user: issued.filter((c) => c.type === "user").length,
      host: issued.filter((c) => c.type === "host").length,
      userValidNow: issued.filter((c) => c.type === "user" && Date.parse(c.validAfter) <= now && now < Date.parse(c.validBefore)).length,
    },
    devices: await readDeviceRecords(ca.paths),
  };
}

/** Pure: the human text of `ca show`. */
export function renderCaShow(s: CaShowResult): string {
  const yes = (b: boolean) => (b ? "loaded in ssh-agent" : "NOT in ssh-agent");
  return [
    `CA ${s.dir} (${s.algorithm})`,
    `  user CA ${s.userCa.fingerprint}  ${yes(s.userCa.inAgent)}`,
    `  host CA ${s.hostCa.fingerprint}  ${yes(s.hostCa.inAgent)}`,
    `  KRL version ${s.krl.version ?? "unreadable"}, ${s.krl.revoked} certificate(s) revoked`,
    `  issued: ${s.issued.user} user certificate(s) (${s.issued.userValidNow} valid now), ${s.issued.host} host certificate(s)`,
    ...(s.userCa.inAgent && s.hostCa.inAgent ? [] : [`  load it: ${s.sshAdd}`]),
    "",
  ].join("\n");
}

export interface CaLoadOptions extends CaOptions {
  passphraseFile?: string;
  env?: NodeJS.ProcessEnv;
  /** how long the agent keeps the CA (ssh-add -t), like 8h */
  lifetime?: string;
  prompt?: (question: string) => Promise<string>;
}

/** Loads both CAs into ssh-agent (ssh-add, the passphrase from a file or the terminal). */
export async function caLoad(o: CaLoadOptions): Promise<{ loaded: string[]; lifetime: string | null }> {
  const ca = await requireCa(sshDirOf(o));
  const lifetimeSeconds = o.lifetime === undefined ? undefined : parseLifetime(o.lifetime, { minSeconds: 60, maxSeconds: 90 * 86400 });
  const passphrase = await obtainPassphrase({ file: o.passphraseFile, env: o.env, prompt: o.prompt });
  await addCaToAgent(ca, { passphrase, sock: o.agentSock ?? process.env.SSH_AUTH_SOCK, lifetimeSeconds });
  return { loaded: [ca.userCa.fingerprint, ca.hostCa.fingerprint], lifetime: lifetimeSeconds ? formatLifetime(lifetimeSeconds) : null };
}

export interface CaInspectResult extends Omit<CertInfo, "validAfter" | "validBefore"> {
  file: string;
  validAfter: string | null;
  validBefore: string | null;
  status: "not-yet-valid" | "valid" | "expired";
  /** whether this machine's CA signed it (null: there is no CA here) */
  signedByThisCa: boolean | null;
  /** whether this CA's KRL revokes it (null: no CA here, or another CA's certificate) */
  revoked: boolean | null;
}

/** What a certificate file says (ssh-keygen -L), whether it is valid now, and whether this CA signed and revoked it. */
export async function caInspect(o: CaOptions & { file: string; now?: Date }): Promise<CaInspectResult> {
  const r = await certificateReport(o.file, o.now);
  const ca = await loadCa(sshDirOf(o));
  const mine = ca ? r.caFingerprint === (r.kind === "user" ? ca.userCa : ca.hostCa).fingerprint : null;
  let revoked: boolean | null = null;
  if (ca && mine && r.kind === "user") {
    const q = await run("ssh-keygen", krlQueryArgv(ca.paths.krl, o.file), { check: false });
    revoked = q.code === 1 ? true : q.code === 0 ? false : null;
  }
  return { ...r, file: o.file, validAfter: r.validAfter?.toISOString() ?? null, validBefore: r.validBefore?.toISOString() ?? null, signedByThisCa: mine, revoked };
}

/** Pure: the human text of `ca inspect`. */
export function renderCaInspect(r: CaInspectResult): string {
  return [
    `${r.file}: ${r.kind} certificate ${r.keyId} (serial ${r.serial})`,
    `  key ${r.keyFingerprint}, signed by ${r.caKeyType} ${r.caFingerprint}${r.signatureAlgorithm ? ` (${r.signatureAlgorithm})` : ""}${r.signedByThisCa === null ? "" : r.signedByThisCa ? ", this fleet's CA" : ", NOT this fleet's CA"}`,
    `  valid ${r.validAfter ?? "always"} to ${r.validBefore ?? "forever"}: ${r.status}${r.revoked ? ", REVOKED" : ""}`,
    `  principals: ${r.principals.join(", ") || "(none)"}`,
    "",
  ].join("\n");
}

export interface CaPushOptions extends FleetOptions, CaOptions {
}

export interface CaPushResult {
  krlVersion: number;
  relay: RelayPush;
  devices: DevicesPush;
}

/**
 * The user CA key and the current KRL to the relay, then the KRL to every device of this
 * laptop that does not have its version yet (offline ones are listed; run it again later).
 */
export async function caPush(o: CaPushOptions): Promise<CaPushResult> {
  const ca = await requireCa(sshDirOf(o));
  const f = await openFleet(o);
  const { model } = await readLaptopSide(f);
  const krl = await currentKrl(ca);
  f.log(`relay: user CA ${ca.userCa.fingerprint} and KRL version ${krl.version}`);
  const relay = await pushToRelay(f, { ca, krl });
  const devices = await pushKrlToDevices(f, ca, model, krl);
  return { krlVersion: krl.version, relay, devices };
}
