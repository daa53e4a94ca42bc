// The CA's records on the operator's machine (lib/contract/ca.ts has their shapes):
// issued.jsonl (appended, one line per certificate), revoked.json (the revocation list's
// source, replaced atomically) and devices.json (what each device was last given). Each is
// checked against its schema when read: a hand edit that breaks one stops the command with
// one line naming the file, never a guess. Changes to revoked.json and devices.json hold
// the CA's lock (a file made with O_EXCL), so two commands never lose each other's change.
import { appendFile, open, readFile, rm } from "node:fs/promises";
import { z } from "zod";
import type { caPaths, DeviceCaRecord, DeviceCaRecords, IssuedCert, RevokedList } from "../../lib/contract/ca.ts";
import { parseKeyId, parseSerial } from "../../lib/contract/ca.ts";
import { NAME_PATTERN } from "../../lib/contract/relay.ts";
import { alive } from "../../lib/proc.ts";
import { ExitError, EXIT } from "../errors.ts";
import { atomicWrite } from "../laptop/files.ts";

export type CaPaths = ReturnType<typeof caPaths>;

const time = z.string().regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/);
const name = z.string().regex(NAME_PATTERN);
const serial = z.string().refine((s) => parseSerial(s) !== undefined, "not a serial (1..2^64-1 in decimal)");
const keyId = z.string().refine((s) => parseKeyId(s) !== undefined, "not a key id of ours (rtunnel:NAME:SERIAL)");

export const IssuedCertSchema = z.object({
  type: z.enum(["user", "host"]),
  name,
  serial,
  keyId,
  principals: z.array(z.string().min(1)),
  validAfter: time,
  validBefore: time,
  keyFingerprint: z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/),
  issuedAt: time,
}) satisfies z.ZodType<IssuedCert>;

export const RevokedListSchema = z.object({
  version: z.number().int().min(1),
  revoked: z.array(z.object({ serial, keyId: keyId.optional(), name: name.optional(), revokedAt: time })),
}) satisfies z.ZodType<RevokedList>;

export const DeviceCaRecordsSchema = z.record(
  name,
  z.object({
    krlVersion: z.number().int().min(1).optional(),
    krlAt: time.optional(),
    hostCert: z.object({ serial, validAfter: time, validBefore: time }).optional(),
    clock: z.object({ offsetSeconds: z.number().finite(), uncertaintySeconds: z.number().finite().min(0), measuredAt: time }).optional(),
  }),
) satisfies z.ZodType<DeviceCaRecords>;

/** The revocation list of a new CA: nothing revoked, version 1 (its empty KRL's version). */
export const EMPTY_REVOKED: RevokedList = { version: 1, revoked: [] };

function broken(file: string, why: string): ExitError {
  return new ExitError(EXIT.usage, `${file} is not what the CA wrote (${why}): restore it from a backup or fix it by hand`);
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ExitError(EXIT.usage, `can't read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function parseJson<T>(file: string, text: string, schema: z.ZodType<T>): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw broken(file, "not JSON");
  }
  const r = schema.safeParse(json);
  if (!r.success) throw broken(file, `${r.error.issues[0]?.path.join(".") || "top"}: ${r.error.issues[0]?.message}`);
  return r.data;
}

/** Every certificate this CA issued, oldest first (an absent file: none). */
export async function readIssued(p: CaPaths): Promise<IssuedCert[]> {
  const text = (await readText(p.issued)) ?? "";
  return text
    .split("\n")
    .map((line, i) => ({ line, i }))
    .filter(({ line }) => line.trim())
    .map(({ line, i }) => parseJson(`${p.issued} line ${i + 1}`, line, IssuedCertSchema));
}

/** Appends one record: a single write of one line (O_APPEND), fsynced. */
export async function appendIssued(p: CaPaths, rec: IssuedCert): Promise<void> {
  const line = `${JSON.stringify(IssuedCertSchema.parse(rec))}\n`;
  await appendFile(p.issued, line, { mode: 0o600 });
  const fh = await open(p.issued, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function readRevoked(p: CaPaths): Promise<RevokedList> {
  const text = await readText(p.revoked);
  return text === undefined ? EMPTY_REVOKED : parseJson(p.revoked, text, RevokedListSchema);
}

export async function writeRevoked(p: CaPaths, list: RevokedList): Promise<void> {
  await atomicWrite(p.revoked, `${JSON.stringify(RevokedListSchema.parse(list), null, 2)}\n`);
}

export async function readDeviceRecords(p: CaPaths): Promise<DeviceCaRecords> {
  const text = await readText(p.devices);
  return text === undefined ? {} : parseJson(p.devices, text, DeviceCaRecordsSchema);
}

/**
 * Changes one device's record (under the CA's lock): `patch` is merged into what is there;
 * `undefined` as a patch removes the device (revoke-device).
 */
export async function updateDeviceRecord(p: CaPaths, device: string, patch: Partial<DeviceCaRecord> | undefined): Promise<DeviceCaRecords> {
  name.parse(device);
  return withCaLock(p, async () => {
    const all = await readDeviceRecords(p);
    if (patch === undefined) delete all[device];
    else all[device] = { ...all[device], ...patch };
    await atomicWrite(p.devices, `${JSON.stringify(DeviceCaRecordsSchema.parse(all), null, 2)}\n`);
    return all;
  });
}

const LOCK = ".lock";

/**
 * Runs `fn` holding the CA's lock: `rtunnel-ca/.lock`, made with O_EXCL and holding the
 * holder's pid. A lock whose process is gone (a crash) is taken over; a live holder is waited
 * for, up to a bound, then one line says who holds it.
 */
export async function withCaLock<T>(p: CaPaths, fn: () => Promise<T>, o: { tries?: number } = {}): Promise<T> {
  const lock = `${p.dir}/${LOCK}`;
  const tries = o.tries ?? 100;
  for (let attempt = 1; ; attempt++) {
    try {
      const fh = await open(lock, "wx", 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const holder = Number((await readText(lock))?.trim());
      if (Number.isInteger(holder) && holder > 0 && !alive(holder)) {
        // Read once more just before the removal: another command may have taken the stale lock
        // over already, and its fresh lock must stay (the window left is this read's).
        if (Number((await readText(lock))?.trim()) === holder) await rm(lock, { force: true });
        continue;
      }
      if (attempt >= tries) throw new ExitError(EXIT.usage, `the CA is busy: another rtunnel command (pid ${holder || "?"}) holds ${lock}; wait for it, or remove the file if no such process runs`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}
