// `list` / `status`: the relay's registry (devices and clients: online, port, live connections
// against the key's limit, connected since, last seen, last refusal, fingerprint) plus the
// devices revoked with `revoke-device`. A device is online only when its own sshd answers
// through the tunnel; a tunnel that listens on the relay with nobody answering is "no answer". A revoked device is
// gone from the registry; the relay's own audit (history.ts replays it) still records its
// `remove`, so "revoked" is read from the relay, not kept on this laptop: every operator sees
// the same fleet. Exit code: 0 when every (not revoked) device is online.
import { EXIT } from "../errors.ts";
import { replay, revokedDevices } from "../relay/history.ts";
import type { AuditEvent, ClientListing, DeviceListing, Listing } from "../relay/protocol.ts";
import { openFleet, withRelay, type FleetOptions } from "./fleet.ts";

export type ListOptions = FleetOptions;

export type StatusEntry =
  | (DeviceListing & { state: "online" | "no-answer" | "offline" })
  | { kind: "device"; name: string; fingerprint: string; state: "revoked"; revokedAt: string; port: null; online: false; connectedSince: null; lastSeen: null; connections: 0; limit: null; lastRefused: null }
  | (ClientListing & { state: "client" });

export interface FleetStatus {
  entries: StatusEntry[];
  /** every device in the registry is online (revoked ones don't count) */
  allOnline: boolean;
}

/** Pure: the registry plus the revoked devices, each with its state. */
export function fleetStatus(registry: readonly Listing[], events: readonly AuditEvent[]): FleetStatus {
  const devices = registry.filter((e): e is DeviceListing => e.kind === "device");
  const clients = registry.filter((e): e is ClientListing => e.kind === "client");
  const revoked = revokedDevices(replay(events), registry);
  return {
    entries: [
      ...devices.map((d) => ({ ...d, state: deviceState(d) })),
      ...revoked.map((r) => ({
        kind: "device" as const, name: r.name, fingerprint: r.fingerprint, state: "revoked" as const, revokedAt: r.revokedAt,
        port: null, online: false as const, connectedSince: null, lastSeen: null, connections: 0 as const, limit: null, lastRefused: null,
      })),
      ...clients.map((c) => ({ ...c, state: "client" as const })),
    ],
    allOnline: devices.every((d) => d.online),
  };
}

const deviceState = (d: DeviceListing) => (d.online ? ("online" as const) : d.listening ? ("no-answer" as const) : ("offline" as const));

export async function statusRelay(o: ListOptions): Promise<FleetStatus> {
  return withRelay(await openFleet(o), async (relay) => fleetStatus(await relay.list(), await relay.audit()));
}

/** The exit code of `status`: usable from cron and monitoring. */
export function statusExitCode(s: FleetStatus): number {
  return s.allOnline ? 0 : EXIT.offline;
}

/** Pure: a table with columns padded to their widest cell. */
export function renderTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n")}\n`;
}

/** Pure: the human table. */
export function renderList(entries: readonly StatusEntry[]): string {
  const rows = [["NAME", "KIND", "STATE", "PORT", "CONNS", "CONNECTED SINCE", "LAST SEEN", "LAST REFUSED", "FINGERPRINT", "DEVICES"]];
  for (const e of entries) {
    rows.push([
      e.name,
      e.kind,
      e.kind === "client" ? (e.online ? "connected" : "-") : e.state === "no-answer" ? "no answer" : e.state,
      e.port === undefined || e.port === null ? "-" : String(e.port),
      e.state === "revoked" ? "-" : `${e.connections}/${e.limit ?? "?"}`,
      e.connectedSince ?? "-",
      e.state === "revoked" ? `revoked ${e.revokedAt}` : (e.lastSeen ?? "-"),
      e.lastRefused ? `${e.lastRefused.time} (${e.lastRefused.reason === "limit" ? `limit ${e.lastRefused.limit ?? "?"}` : e.lastRefused.reason})` : "-",
      e.fingerprint,
      e.kind === "client" ? (e.all ? "(all)" : e.devices.join(",") || "-") : "",
    ]);
  }
  return renderTable(rows);
}

/** Pure: the one summary line on stderr after the table. */
export function summaryLine(s: FleetStatus): string {
  const devices = s.entries.filter((e) => e.kind === "device");
  const online = devices.filter((d) => d.state === "online").length;
  const live = devices.filter((d) => d.state !== "revoked").length;
  const revoked = devices.length - live;
  const silent = devices.filter((d) => d.state === "no-answer").length;
  const silentNote = silent ? `, ${silent} with a tunnel but no answer from the device's sshd` : "";
  return `${online}/${live} devices online${silentNote}${revoked ? `, ${revoked} revoked` : ""}${s.allOnline ? "" : ` (exit ${EXIT.offline}: not all online)`}`;
}
