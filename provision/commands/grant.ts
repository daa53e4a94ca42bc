// `grant` and `login`: short-lived user certificates from the fleet's user CA (in ssh-agent).
// `grant NAME --key FILE.pub --devices a,b --for 8h` certifies another laptop's key for those
// devices (FILE-cert.pub beside the key, or with --out DIR that laptop's ~/.ssh files and
// DIR/KEY-cert.pub, KEY as --key names it); `login --for 12h` does the same for this laptop's own identity
// (IDENTITY-cert.pub beside it). ssh loads IDENTITY-cert.pub by itself for an IdentityFile,
// so the files the kit writes today already offer the certificate.
// Nothing is written until the certificate is signed, and every destination is checked
// writable before signing; a certificate file of another CA is never replaced.
import { show } from "../../lib/input.ts";
import path from "node:path";
import { canonicalDevices, certificateFileFor, formatLifetime, parseLifetime, USER_CERT_LIFETIME } from "../../lib/contract/ca.ts";
import type { PublicKey } from "../../lib/keys.ts";
import { requireCa, inspectCertificate, signUserCert, sshDirOf, type Ca } from "../ca/ca.ts";
import { ExitError, EXIT } from "../errors.ts";
import { applyLaptop, atomicWrite, checkWritable, laptopModel, laptopPaths, planLaptopWrites, readLaptop, readLaptopFile, readPublicKeyFile } from "../laptop/files.ts";
import { deviceHostCa, LAPTOP_FILES, pinnedDeviceKey, renderLaptopFiles, withCertificateFile, type LaptopModel } from "../laptop/model.ts";
import { loadRelayFacts, type RelayFacts } from "../relay/facts.ts";
import { configPath, validateName } from "../validate.ts";
import { defaultClientName } from "./enroll.ts";

interface CertCommon {
  sshDir?: string;
  home?: string;
  /** this laptop's private key (default SSH_DIR/id_ed25519) */
  identity?: string;
  /** `--for`, like 8h */
  lifetime?: string;
  /** the ssh-agent holding the user CA (default SSH_AUTH_SOCK) */
  agentSock?: string;
  now?: Date;
  log?: (line: string) => void;
}

export interface CertResult {
  name: string;
  serial: string;
  keyId: string;
  devices: string[];
  principals: string[];
  validAfter: string;
  validBefore: string;
  lifetime: string;
  /** the certificate file written */
  certificateFile: string;
  /** every file written, the certificate first */
  written: string[];
}

/** This laptop's model, read only (grant and login change none of its files). */
async function readModelOnly(o: CertCommon): Promise<{ model: LaptopModel; fragment: string }> {
  const p = laptopPaths({ home: o.home, sshDir: o.sshDir });
  const identity = path.resolve(o.identity ?? path.join(p.sshDir, "id_ed25519"));
  const [fragment, known] = await Promise.all([readLaptopFile(p.fragment), readLaptopFile(p.knownHosts)]);
  return { model: laptopModel(p, { fragment, known }, identity), fragment: p.fragment };
}

/** The devices of a grant: named ones must be enrolled from this laptop; --all is every one it knows now. */
function grantedDevices(model: LaptopModel, wanted: readonly string[] | "all", fragment: string): string[] {
  if (wanted === "all") {
    if (!model.devices.size) throw new ExitError(EXIT.usage, `no device is enrolled from this laptop (${fragment}): enroll one first`);
    return canonicalDevices([...model.devices.keys()]);
  }
  const devices = canonicalDevices(wanted.map((d) => validateName(d, "each device in --devices")));
  const missing = devices.filter((d) => !model.devices.has(d));
  if (missing.length) throw new ExitError(EXIT.usage, `no device ${missing.join(", ")} in this laptop's ${fragment}: a certificate is granted for devices enrolled from here (see \`status\`)`);
  return devices;
}

/** Refuses to replace a certificate file that another CA signed (the user's own, e.g. a company's). */
async function checkCertDestination(file: string, ca: Ca): Promise<void> {
  await checkWritable(file);
  if ((await readLaptopFile(file)) === undefined) return;
  const info = await inspectCertificate({ file }).catch(() => undefined);
  if (!info) throw new ExitError(EXIT.usage, `${file} exists and is not a certificate: not replacing it (move it away)`);
  if (info.caFingerprint !== ca.userCa.fingerprint) throw new ExitError(EXIT.usage, `${file} holds a certificate from another CA (${info.caFingerprint}): not replacing it; certify another key`);
}

async function issue(o: CertCommon & { ca: Ca; name: string; key: PublicKey; devices: string[]; lifetimeSeconds: number }) {
  return signUserCert({ ca: o.ca, key: o.key, name: o.name, devices: o.devices, lifetimeSeconds: o.lifetimeSeconds, now: o.now, agentSock: o.agentSock });
}

function result(name: string, devices: string[], s: Awaited<ReturnType<typeof issue>>, lifetimeSeconds: number, certificateFile: string, written: string[]): CertResult {
  return {
    name,
    serial: s.record.serial,
    keyId: s.record.keyId,
    devices,
    principals: s.record.principals,
    validAfter: s.record.validAfter,
    validBefore: s.record.validBefore,
    lifetime: formatLifetime(lifetimeSeconds),
    certificateFile,
    written,
  };
}

export interface GrantOptions extends CertCommon {
  name: string;
  /** the laptop's public key file */
  key: string;
  devices: string[] | "all";
  /** write that laptop's ssh files and its certificate into DIR */
  out?: string;
  /** with --out: that laptop runs Windows' OpenSSH (no ControlMaster) */
  windows?: boolean;
  relayFile?: string;
  relay?: RelayFacts;
  cwd?: string;
}

/**
 * A user certificate for another laptop's key, for `devices`, valid for `--for`. Without
 * --out it is written beside the key as FILE-cert.pub; with --out DIR, DIR gets that laptop's
 * files (as add-client writes them) and DIR/KEY-cert.pub (KEY: the name of --key without .pub).
 */
export async function grant(o: GrantOptions): Promise<CertResult> {
  const name = validateName(o.name, "grant name");
  const lifetimeSeconds = parseLifetime(o.lifetime ?? USER_CERT_LIFETIME.grantDefault);
  const key = await readPublicKeyFile(o.key, "--key");
  const ca = await requireCa(sshDirOf(o));
  const { model, fragment } = await readModelOnly(o);
  const devices = grantedDevices(model, o.devices, fragment);

  let certificateFile = certificateFileFor(path.resolve(o.key));
  let laptopFiles: { file: string; text: string }[] = [];
  if (o.out) {
    const out = path.resolve(o.out);
    // That laptop's key keeps its own name (id_ed25519, id_rsa, ...): its certificate sits beside it.
    const keyName = path.basename(o.key).replace(/\.pub$/, "");
    if (!/^[A-Za-z0-9._-]+$/.test(keyName)) throw new ExitError(EXIT.usage, `--key ${show(o.key)}: name the public key file like id_ed25519.pub (letters, digits, . _ -), as it is named on that laptop`);
    certificateFile = path.join(out, `${keyName}-cert.pub`);
    const facts = o.relay ?? (await loadRelayFacts(o.relayFile, o.cwd));
    // Each device as this laptop trusts it: the host CA for its name (it has a host
    // certificate), or its pinned key.
    const targets = devices.map((d) => {
      const local = model.devices.get(d)!;
      const hostKey = pinnedDeviceKey(model, d);
      const hostCa = deviceHostCa(model, d);
      if (!hostKey && !hostCa) throw new ExitError(EXIT.usage, `this laptop has no pinned host key for ${d}: run grant --out from the laptop that enrolled it`);
      return { name: d, port: local.port, user: local.user, ...(hostCa ? { hostCa } : { hostKey: hostKey! }) };
    });
    // That laptop offers its certificate and its key only (CertificateFile + IdentitiesOnly yes
    // on both hops): an agent holding many keys never runs it into MaxAuthTries.
    const files = renderLaptopFiles({ relay: facts, devices: targets, multiplex: !o.windows, certificateFile: `~/.ssh/${keyName}-cert.pub`, identityFile: `~/.ssh/${keyName}` });
    laptopFiles = LAPTOP_FILES.map((rel) => ({ file: path.join(out, rel), text: files[rel] }));
  }
  await checkCertDestination(certificateFile, ca);
  for (const { file } of laptopFiles) await checkWritable(file);

  const signed = await issue({ ...o, ca, name, key, devices, lifetimeSeconds });
  await atomicWrite(certificateFile, `${signed.certificate}\n`);
  for (const { file, text } of laptopFiles) await atomicWrite(file, text);
  return result(name, devices, signed, lifetimeSeconds, certificateFile, [certificateFile, ...laptopFiles.map((f) => f.file)]);
}

export interface LoginOptions extends CertCommon {
  /** the name in the key id (default laptop-HOSTNAME, as enrollment names this laptop) */
  name?: string;
  /** default: every device enrolled from this laptop */
  devices?: string[] | "all";
}

/**
 * A user certificate for this laptop's own identity, for every device enrolled from here (or
 * --devices), written beside the identity as IDENTITY-cert.pub.
 */
export async function login(o: LoginOptions): Promise<CertResult> {
  const name = validateName(o.name ?? defaultClientName(), "--name");
  const lifetimeSeconds = parseLifetime(o.lifetime ?? USER_CERT_LIFETIME.loginDefault);
  const sshDir = sshDirOf(o);
  const identity = path.resolve(o.identity ?? path.join(sshDir, "id_ed25519"));
  if (identity.endsWith(".pub")) throw new ExitError(EXIT.usage, `--identity names the private key (its .pub is read beside it), not ${identity}`);
  const key = await readPublicKeyFile(`${identity}.pub`, "this laptop's public key");
  const ca = await requireCa(sshDir);
  const { model, fragment } = await readModelOnly({ ...o, identity });
  const devices = grantedDevices(model, o.devices ?? "all", fragment);
  const certificateFile = certificateFileFor(identity);
  await checkCertDestination(certificateFile, ca);
  // This laptop's rtunnel files name the certificate on both hops (CertificateFile, beside
  // IdentitiesOnly yes): read and checked writable before signing, written after.
  const p = laptopPaths({ home: o.home, sshDir: o.sshDir });
  const state = await readLaptop(p);
  const current = laptopModel(p, state, identity);
  const plan = current.relays.size ? planLaptopWrites(p, state, withCertificateFile(current, configPath(certificateFile, p.home, p.windows)), { include: false }) : { writes: [], backup: false };
  const signed = await issue({ ...o, ca, name, key, devices, lifetimeSeconds });
  await atomicWrite(certificateFile, `${signed.certificate}\n`);
  const laptop = await applyLaptop(p, plan);
  return result(name, devices, signed, lifetimeSeconds, certificateFile, [certificateFile, ...laptop]);
}
