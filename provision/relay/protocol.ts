// The relay's admin protocol (DESIGN.md "Admin protocol", images/rtunneld/rtunneld-admin): the
// answer of every verb as a schema, checked where it crosses into the CLI, and the types the
// rest of the code reads. JSON fixtures of each answer (test/fixtures/protocol/) are held to
// these schemas in the unit suite and to the real relay in the Docker suite.
import { z } from "zod";

const fingerprint = z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/);
const name = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/);
const port = z.number().int().min(1).max(65535);
const time = z.string().regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

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

/** Why the relay refused a connection: a key it does not know, a key at its limit of live connections, a bad signature. */
export const RefusalReason = z.enum(["unknown-key", "limit", "signature"]);

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
export const ListAnswer = z.array(z.discriminatedUnion("kind", [DeviceListing, ClientListing]));

const changeBase = { time, type: z.literal("change"), name, fingerprint, from: z.string() };
export const AddDeviceChange = z.object({ ...changeBase, verb: z.literal("add-device"), port, replaced: fingerprint.optional() });
export const AddClientChange = z.object({ ...changeBase, verb: z.literal("add-client"), all: z.boolean(), devices: z.array(name) });
export const RemoveChange = z.object({ ...changeBase, verb: z.literal("remove"), kind: z.enum(["device", "client"]) });
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
});
export const AuditAnswer = z.array(z.union([AddDeviceChange, AddClientChange, RemoveChange, ConnectionEvent]));

export const HostKeyAnswer = z.string().regex(/^[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}$/);

export type AddDeviceAnswer = z.infer<typeof AddDeviceAnswer>;
export type AddClientAnswer = z.infer<typeof AddClientAnswer>;
export type RemoveAnswer = z.infer<typeof RemoveAnswer>;
export type DeviceListing = z.infer<typeof DeviceListing>;
export type ClientListing = z.infer<typeof ClientListing>;
export type Listing = DeviceListing | ClientListing;
export type AddDeviceChange = z.infer<typeof AddDeviceChange>;
export type AddClientChange = z.infer<typeof AddClientChange>;
export type RemoveChange = z.infer<typeof RemoveChange>;
export type ChangeEvent = AddDeviceChange | AddClientChange | RemoveChange;
export type ConnectionEvent = z.infer<typeof ConnectionEvent>;
export type RefusalReason = z.infer<typeof RefusalReason>;
export type AuditEvent = ChangeEvent | ConnectionEvent;

/** Each verb and the schema of its answer (host-key answers one line of text, not JSON). */
export const ANSWERS = {
  "add-device": AddDeviceAnswer,
  "add-client": AddClientAnswer,
  remove: RemoveAnswer,
  list: ListAnswer,
  audit: AuditAnswer,
} as const;
export type JsonVerb = keyof typeof ANSWERS;

/** A client's grant: the devices by name, or every device. */
export type Grant = readonly string[] | "all";

/** What a listing's client may reach now. */
export const grantOf = (c: ClientListing): Grant => (c.all ? "all" : c.devices);
