// The relay's admin protocol (DESIGN.md "Admin protocol", images/rtunneld/rtunneld-admin): the
// answer of every verb as a schema, checked where it crosses into the CLI, and the types the
// rest of the code reads. JSON fixtures of each answer (test/fixtures/protocol/) are held to
// these schemas in the unit suite and to the real relay in the Docker suite.
import { z } from "zod";
import { parseKeyId, parseSerial } from "../../lib/contract/ca.ts";
import { NAME_PATTERN, RELAY_CERTIFICATES } from "../../lib/contract/relay.ts";

const fingerprint = z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/);
const name = z.string().regex(NAME_PATTERN);
const port = z.number().int().min(1).max(65535);
const time = z.string().regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
/** a certificate's serial: 1..2^64-1 as a decimal string (beyond a JS number) */
const serial = z.string().refine((s) => parseSerial(s) !== undefined, "a certificate serial (1..2^64-1, decimal)");
/**
 * A serial as sshd logged it for any certificate offered, the kit's or not: 0..2^64-1 (0 is
 * what `ssh-keygen -s` writes without -z). One foreign certificate's row must not make the
 * whole `audit` answer unreadable.
 */
const loggedSerial = z.string().refine((s) => s === "0" || parseSerial(s) !== undefined, "a certificate serial (0..2^64-1, decimal)");
/** a key id the kit issues, rtunnel:HOLDER:SERIAL */
const keyIdText = z.string().refine((s) => parseKeyId(s) !== undefined, "a key id rtunnel:NAME:SERIAL");
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

export const AddDeviceAnswer = z.object({
  name,
  port,
  fingerprint,
  /** only when live sessions had to end (a rotation): false when the reaper did not confirm */
  sessionsEnded: z.boolean().optional(),
});

export const AddClientAnswer = z.object({
  name,
  devices: z.array(name),
  sessionsEnded: z.boolean().optional(),
});

export const RemoveAnswer = z.object({
  removed: name,
  /** false when the relay's reaper did not confirm that live sessions ended */
  sessionsEnded: z.boolean().optional(),
});

/**
 * Why the relay refused a connection: a key it does not know, a key at its limit of live
 * connections, a bad signature; a certificate it does not take (an untrusted CA, revoked,
 * expired or not yet valid, no grant it knows, a bad signature: sshd's log line before says which).
 */
export const RefusalReason = z.enum(["unknown-key", "limit", "signature", "certificate"]);

const entryBase = {
  name,
  fingerprint,
  online: z.boolean(),
  connectedSince: time.nullable(),
  lastSeen: time.nullable(),
  /** live authenticated connections of this key now */
  connections: z.number().int().min(0),
  /** the most live connections the relay lets this key hold (null: the relay did not say) */
  limit: z.number().int().min(1).nullable(),
  /** the key's last refused connection since the relay started */
  lastRefused: z.object({ time, reason: RefusalReason, limit: z.number().int().nullable() }).nullable(),
};
export const DeviceListing = z.object({
  ...entryBase,
  kind: z.literal("device"),
  port,
  /** the tunnel's port listens on the relay */
  listening: z.boolean(),
  /** the device's sshd's identification line, read through the tunnel (null: no answer); online is banner !== null */
  banner: z.string().max(255).nullable(),
});
export const ClientListing = z.object({
  ...entryBase,
  kind: z.literal("client"),
  port: z.null().optional(),
  devices: z.array(name),
  /** granted every device, now and later */
  all: z.boolean(),
});
/**
 * A certificate with live logins on `jump` (its rows follow the registry's, and there are none
 * without certificate logins). Not a registry entry: no name, no registry fingerprint.
 */
export const CertificateListing = z.object({
  kind: z.literal("certificate"),
  keyId: keyIdText,
  serial,
  /** who it was granted to (the key id's NAME) */
  holder: name,
  /** the certified key's fingerprint (the per-key limit counts its logins with this key, certified or not) */
  keyFingerprint: fingerprint,
  /** the user CA that signed it */
  ca: fingerprint,
  /** the devices its grant principal names (those the registry has are reachable) */
  devices: z.array(name),
  online: z.literal(true),
  connections: z.number().int().min(1),
  connectedSince: time,
  limit: z.number().int().min(1).nullable(),
});
/** The registry's rows of `list`: its whole answer while no certificate is logged in. */
export const ListAnswer = z.array(z.discriminatedUnion("kind", [DeviceListing, ClientListing]));
/** `list`'s answer: the registry's rows, then one row per certificate with live logins. */
export const ListWithCertificatesAnswer = z.array(z.discriminatedUnion("kind", [DeviceListing, ClientListing, CertificateListing]));

const changeBase = { time, type: z.literal("change"), name, fingerprint, from: z.string() };
export const AddDeviceChange = z.object({ ...changeBase, verb: z.literal("add-device"), port, replaced: fingerprint.optional() });
export const AddClientChange = z.object({ ...changeBase, verb: z.literal("add-client"), all: z.boolean(), devices: z.array(name) });
export const RemoveChange = z.object({ ...changeBase, verb: z.literal("remove"), kind: z.enum(["device", "client"]) });
/** What the relay trusts changed (certificates): no registry name, no registry key. */
const trustBase = { time, type: z.literal("trust"), from: z.string() };
export const SetUserCaChange = z.object({ ...trustBase, verb: z.literal("set-user-ca"), userCa: z.array(fingerprint) });
export const SetKrlChange = z.object({ ...trustBase, verb: z.literal("set-krl"), sha256: sha256Hex, bytes: z.number().int().min(1), version: z.number().int().min(0) });
export const ConnectionEvent = z.object({
  time,
  type: z.literal("connection"),
  account: z.enum(["tunnel", "jump", "admin"]),
  fingerprint,
  /** the registry's name for the key then, "device:NAME:PORT", "client:NAME" or "admin:N"; null: a key the relay does not know */
  key: z.string().regex(/^(device:[a-z0-9-]+:\d+|client:[a-z0-9-]+|admin:\d+)$/).nullable(),
  pid: z.number().int().nullable(),
  /** present when the relay refused the connection */
  refused: RefusalReason.optional(),
  /** with refused "limit": the key's limit of live connections */
  limit: z.number().int().optional(),
  /** a certificate login ("key" is null: a certificate is no registry key): its key id when it is one the kit issues, */
  keyId: keyIdText.optional(),
  /** its serial, */
  serial: loggedSerial.optional(),
  /** the CA that signed it, */
  ca: fingerprint.optional(),
  /** and, when it logged in, the devices its grant names */
  devices: z.array(name).optional(),
});
export const AuditAnswer = z.array(z.union([AddDeviceChange, AddClientChange, RemoveChange, SetUserCaChange, SetKrlChange, ConnectionEvent]));

/** A KRL: the sha256 of its bytes (hex), its size, and its own version (ssh-keygen -k -z N; 0 when none was given). */
const krlFacts = { sha256: sha256Hex, bytes: z.number().int().min(1).max(RELAY_CERTIFICATES.maxKrlBytes), version: z.number().int().min(0) };
export const SetUserCaAnswer = z.object({
  /** the fingerprints of the CA keys `jump` trusts now ([]: none) */
  userCa: z.array(fingerprint).max(RELAY_CERTIFICATES.maxUserCaKeys),
  /** only when live certificate logins of a CA no longer trusted had to end: false when the reaper did not confirm */
  sessionsEnded: z.boolean().optional(),
});
export const SetKrlAnswer = z.object({
  krl: z.object(krlFacts),
  /** only when live logins with a certificate it revokes had to end */
  sessionsEnded: z.boolean().optional(),
});
export const CaAnswer = z.object({
  userCa: z.array(fingerprint).max(RELAY_CERTIFICATES.maxUserCaKeys),
  /** the KRL set with set-krl (the sha256 of its bytes, hex); null: none was set (an empty one is in force) */
  krl: z.object({ ...krlFacts, setAt: time }).nullable(),
});

export const HostKeyAnswer = z.string().regex(/^[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}$/);

export type AddDeviceAnswer = z.infer<typeof AddDeviceAnswer>;
export type AddClientAnswer = z.infer<typeof AddClientAnswer>;
export type RemoveAnswer = z.infer<typeof RemoveAnswer>;
export type DeviceListing = z.infer<typeof DeviceListing>;
export type ClientListing = z.infer<typeof ClientListing>;
/** A registry entry of `list` (certificate rows are CertificateListing). */
export type Listing = DeviceListing | ClientListing;
export type CertificateListing = z.infer<typeof CertificateListing>;
export type AddDeviceChange = z.infer<typeof AddDeviceChange>;
export type AddClientChange = z.infer<typeof AddClientChange>;
export type RemoveChange = z.infer<typeof RemoveChange>;
/** A change of the registry. */
export type ChangeEvent = AddDeviceChange | AddClientChange | RemoveChange;
/** A change of what the relay trusts (certificates). */
export type TrustChangeEvent = z.infer<typeof SetUserCaChange> | z.infer<typeof SetKrlChange>;
export type ConnectionEvent = z.infer<typeof ConnectionEvent>;
export type RefusalReason = z.infer<typeof RefusalReason>;
export type AuditEvent = ChangeEvent | TrustChangeEvent | ConnectionEvent;
export type SetUserCaAnswer = z.infer<typeof SetUserCaAnswer>;
export type SetKrlAnswer = z.infer<typeof SetKrlAnswer>;
export type CaAnswer = z.infer<typeof CaAnswer>;

/** Each verb and the schema of its answer (host-key answers one line of text, not JSON). */
export const ANSWERS = {
  "add-device": AddDeviceAnswer,
  "add-client": AddClientAnswer,
  remove: RemoveAnswer,
  list: ListWithCertificatesAnswer,
  audit: AuditAnswer,
  "set-user-ca": SetUserCaAnswer,
  "set-krl": SetKrlAnswer,
  ca: CaAnswer,
} as const;
export type JsonVerb = keyof typeof ANSWERS;

/** A client's grant: the devices by name, or every device. */
export type Grant = readonly string[] | "all";

/** What a listing's client may reach now. */
export const grantOf = (c: ClientListing): Grant => (c.all ? "all" : c.devices);
