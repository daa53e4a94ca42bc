// `list` / `status`: the relay's registry (devices and clients: online, port, connected since,
// last seen, fingerprint) plus the devices revoked with `revoke-device`. A revoked device is
// gone from the registry; the relay's own audit (history.ts replays it) still records its
// `remove`, so "revoked" is read from the relay, not kept on this laptop: every operator sees
// the same fleet. Exit code: 0 when every (not revoked) device is online.
import { EXIT } from "../errors.ts";
import { replay, revokedDevices } from "../relay/history.ts";
import type { AuditEvent, ClientListing, DeviceListing, Listing } from "../relay/protocol.ts";
import { openFleet, withRelay, type FleetOptions } from "./fleet.ts";

export type ListOptions = FleetOptions;

export type StatusEntry =
  | (DeviceListing & { state: "online" | "offline" })
  | { kind: "device"; name: string; fingerprint: string; state: "revoked"; revokedAt: string; port: null; online: false; connectedSince: null; lastSeen: null }
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
      ...devices.map((d) => ({ ...d, state: d.online ? ("online" as const) : ("offline" as const) })),
      ...revoked.map((r) => ({ kind: "device" as const, name: r.name, fingerprint: r.fingerprint, state: "revoked" as const, revokedAt: r.revokedAt, port: null, online: false as const, connectedSince: null, lastSeen: null })),
      ...clients.map((c) => ({ ...c, state: "client" as const })),
    ],
    allOnline: devices.every((d) => d.online),
  };
}

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
  const rows = [["NAME", "KIND", "STATE", "PORT", "CONNECTED SINCE", "LAST SEEN", "FINGERPRINT", "DEVICES"]];
  for (const e of entries) {
    rows.push([
      e.name,
      e.kind,
      e.kind === "client" ? (e.online ? "connected" : "-") : e.state,
      e.port === undefined || e.port === null ? "-" : String(e.port),
      e.connectedSince ?? "-",
      e.state === "revoked" ? `revoked ${e.revokedAt}` : (e.lastSeen ?? "-"),
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
  return `${online}/${live} devices online${revoked ? `, ${revoked} revoked` : ""}${s.allOnline ? "" : ` (exit ${EXIT.offline}: not all online)`}`;
}
