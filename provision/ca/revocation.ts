// Revoking certificates: revoked.json is the list's source (serials and key ids, with a
// version that goes up by one with every change), revoked.krl its `ssh-keygen -k` rendering
// (the binary KRL sshd's RevokedKeys reads; empty when nothing is revoked) carrying the same
// version. The KRL is rendered beside its place and renamed over it after revoked.json is
// written, so a crash in between leaves a KRL one version behind its source, which
// currentKrl() notices and renders again. Which certificates a NAME or a SERIAL means is
// decided by pure functions over issued.jsonl.
import { createHash } from "node:crypto";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseSerial, type IssuedCert, type Revocation, type RevokedList } from "../../lib/contract/ca.ts";
import { NAME_PATTERN } from "../../lib/contract/relay.ts";
import { InputError, show } from "../../lib/input.ts";
import { run } from "../../lib/proc.ts";
import type { Ca } from "./ca.ts";
import { krlArgv, krlListArgv, krlSpec } from "./keygen.ts";
import { readIssued, readRevoked, withCaLock, writeRevoked, type CaPaths } from "./records.ts";

export type RevokeTarget = { kind: "name"; name: string } | { kind: "serial"; serial: string };

/**
 * Pure: what `revoke-cert ARG` means. A name (a-z0-9-) or a serial (digits); digits that are
 * both an issued serial and a name with certificates are refused as ambiguous.
 */
export function resolveTarget(arg: string, issued: readonly IssuedCert[]): RevokeTarget {
  const serial = parseSerial(arg);
  const isName = NAME_PATTERN.test(arg);
  const knownSerial = serial !== undefined && issued.some((c) => c.serial === arg);
  const knownName = isName && issued.some((c) => c.name === arg);
  if (knownSerial && knownName) throw new InputError(`${show(arg)} is both a serial and a name in issued.jsonl: revoke by the other one's key id instead, or rename`);
  if (knownSerial) return { kind: "serial", serial: arg };
  if (knownName) return { kind: "name", name: arg };
  if (serial !== undefined) return { kind: "serial", serial: arg };
  if (isName) return { kind: "name", name: arg };
  throw new InputError(`revoke-cert takes a name (a-z, 0-9, -) or a serial (1..2^64-1, from issued.jsonl or ssh-keygen -L) (got ${show(arg)})`);
}

/**
 * Pure: the revocations a target adds. A name: every user certificate issued to it that has
 * not expired at `now` (an expired one is refused by its dates already). A serial: that
 * certificate, with its key id when issued.jsonl knows it (a serial it does not know is
 * revoked all the same: this CA may have signed elsewhere). Host certificates are not revoked
 * here: a device's is replaced by enrolling it again, and a device is cut off by revoke-device.
 */
export function revocationsFor(target: RevokeTarget, issued: readonly IssuedCert[], now: Date): Revocation[] {
  const at = now.toISOString();
  if (target.kind === "serial") {
    const cert = issued.find((c) => c.serial === target.serial);
    if (cert?.type === "host") throw new InputError(`serial ${target.serial} is the host certificate of device ${cert.name}: enroll ${cert.name} again for a new one, or revoke-device ${cert.name}`);
    return [{ serial: target.serial, ...(cert ? { keyId: cert.keyId, name: cert.name } : {}), revokedAt: at }];
  }
  const mine = issued.filter((c) => c.type === "user" && c.name === target.name);
  if (mine.length === 0) throw new InputError(`no certificate was issued to ${target.name} by this CA (issued.jsonl): check the name with \`npm run ca -- show\``);
  return mine.filter((c) => Date.parse(c.validBefore) > now.getTime()).map((c) => ({ serial: c.serial, keyId: c.keyId, name: c.name, revokedAt: at }));
}

/** Pure: the list with `add` in it (serials already there are left alone); the version goes up only when something was added. */
export function withRevocations(list: RevokedList, add: readonly Revocation[]): { list: RevokedList; added: Revocation[] } {
  const have = new Set(list.revoked.map((r) => r.serial));
  const added: Revocation[] = [];
  for (const r of add) {
    if (have.has(r.serial)) continue;
    have.add(r.serial);
    added.push(r);
  }
  return added.length ? { list: { version: list.version + 1, revoked: [...list.revoked, ...added] }, added } : { list, added };
}

/** The version a KRL file says it is (`# KRL version N` of `ssh-keygen -Q -l`), or undefined when it can't be read. */
export async function krlVersion(file: string): Promise<number | undefined> {
  const r = await run("ssh-keygen", krlListArgv(file), { check: false });
  const m = /^# KRL version (\d+)$/m.exec(r.stdout);
  return r.code === 0 && m ? Number(m[1]) : undefined;
}

/** Renders `list` into the CA's revoked.krl: beside it first, then renamed over it. */
async function renderKrl(ca: Ca, list: RevokedList): Promise<void> {
  const p = ca.paths;
  const tag = `${process.pid}-${Date.now()}`;
  const tmpKrl = path.join(p.dir, `.revoked.krl.${tag}`);
  const spec = path.join(p.dir, `.revoked.spec.${tag}`);
  try {
    const text = krlSpec(list.revoked);
    if (text) await writeFile(spec, text, { mode: 0o600 });
    await run("ssh-keygen", krlArgv({ out: tmpKrl, version: list.version, caPub: p.userCaPub, ...(text ? { specFile: spec } : {}) }));
    await rename(tmpKrl, p.krl);
  } finally {
    await rm(tmpKrl, { force: true });
    await rm(spec, { force: true });
  }
}

export interface Krl {
  /** the binary KRL, as sshd's RevokedKeys reads it */
  bytes: Buffer;
  version: number;
  /** hex sha256 of the bytes (what the relay's set-krl answers) */
  sha256: string;
  file: string;
  /** how many certificates it revokes */
  revoked: number;
}

/**
 * The KRL to install on the relay and the devices: revoked.krl, rendered again first when it
 * is missing or not of revoked.json's version (a crash between the two writes).
 */
export async function currentKrl(ca: Ca): Promise<Krl> {
  return withCaLock(ca.paths, async () => {
    const list = await readRevoked(ca.paths);
    await renderKrlIfBehind(ca, list);
    return krlOf(ca.paths, list);
  });
}

/** Renders revoked.krl from `list` when it is missing or of another version (under the CA's lock). */
async function renderKrlIfBehind(ca: Ca, list: RevokedList): Promise<void> {
  if ((await krlVersion(ca.paths.krl)) !== list.version) await renderKrl(ca, list);
}

async function krlOf(p: CaPaths, list: RevokedList): Promise<Krl> {
  const bytes = await readFile(p.krl);
  return { bytes, version: list.version, sha256: createHash("sha256").update(bytes).digest("hex"), file: p.krl, revoked: list.revoked.length };
}

export interface RevokeResult {
  target: RevokeTarget;
  /** what this call added (empty: it was all revoked already, nothing changed) */
  added: Revocation[];
  krl: Krl;
}

/**
 * Revokes what `arg` (a name or a serial) means: revoked.json gains it with the next version
 * and revoked.krl is rendered from it. Again for the same target changes nothing.
 */
export async function revoke(ca: Ca, arg: string, now = new Date()): Promise<RevokeResult> {
  return withCaLock(ca.paths, async () => {
    const issued = await readIssued(ca.paths);
    const target = resolveTarget(arg, issued);
    const wanted = revocationsFor(target, issued, now);
    if (target.kind === "name" && wanted.length === 0) throw new InputError(`every certificate issued to ${target.name} has expired already: nothing to revoke`);
    const before = await readRevoked(ca.paths);
    const { list, added } = withRevocations(before, wanted);
    if (added.length) {
      // The source first, then its KRL (rendered beside its place and renamed over it): a
      // crash in between leaves a KRL one version behind, which currentKrl() renders again.
      await writeRevoked(ca.paths, list);
      await renderKrl(ca, list);
    } else {
      await renderKrlIfBehind(ca, list);
    }
    return { target, added, krl: await krlOf(ca.paths, list) };
  });
}
