// `list` / `status`: the relay's registry (devices and clients: online, port, connected since,
// last seen, fingerprint) plus the devices revoked with `revoke-device`. A revoked device is
// gone from the registry; the relay's own audit log (`audit` verb) still records its
// `remove`, so "revoked" is read from the relay, not kept on this laptop: every operator
// sees the same fleet. Exit code: 0 when every (not revoked) device is online.
import { EXIT } from "./errors.ts";
import { openFleet, withRelay, type FleetOptions } from "./fleet.ts";
import type { AuditEvent, RelayEntry } from "./relay.ts";

export type ListOptions = FleetOptions;

export interface StatusEntry extends RelayEntry {
  /** online / offline for devices in the registry, revoked for removed devices, client */
  state: "online" | "offline" | "revoked" | "client";
  /** for revoked devices: when and by which admin connection */
  revokedAt?: string;
}

export interface FleetStatus {
  entries: StatusEntry[];
  /** every device in the registry is online (revoked ones don't count) */
  allOnline: boolean;
}

/** Pure: devices whose last registry change was a `remove`, and that are not registered again. */
export function revokedDevices(events: readonly AuditEvent[], registry: readonly RelayEntry[]): StatusEntry[] {
  const last = new Map<string, AuditEvent>();
  for (const e of events) {
    if (e.type !== "change" || typeof e.name !== "string") continue;
    if (e.verb === "add-device" || (e.verb === "remove" && e.kind === "device")) last.set(e.name, e);
    else if (e.verb === "remove" || e.verb === "add-client") last.delete(e.name);
  }
  const present = new Set(registry.map((r) => r.name));
  const out: StatusEntry[] = [];
  for (const [name, e] of [...last].sort(([a], [b]) => a.localeCompare(b))) {
    if (e.verb !== "remove" || present.has(name)) continue;
    out.push({ name, kind: "device", fingerprint: String(e.fingerprint ?? "-"), online: false, connectedSince: null, lastSeen: null, state: "revoked", revokedAt: e.time });
  }
  return out;
}

/** Pure: the registry plus the revoked devices, each with its state. */
export function fleetStatus(registry: readonly RelayEntry[], events: readonly AuditEvent[]): FleetStatus {
  const entries: StatusEntry[] = registry.map((e) => ({ ...e, state: e.kind === "device" ? (e.online ? "online" : "offline") : "client" }));
  const revoked = revokedDevices(events, registry);
  const devices = entries.filter((e) => e.kind === "device");
  return {
    entries: [...devices, ...revoked, ...entries.filter((e) => e.kind !== "device")],
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

/** Pure: the human table. */
export function renderList(entries: readonly (RelayEntry | StatusEntry)[]): string {
  const rows = [["NAME", "KIND", "STATE", "PORT", "CONNECTED SINCE", "LAST SEEN", "FINGERPRINT", "DEVICES"]];
  for (const e of entries) {
    const state = "state" in e ? e.state : e.kind === "device" ? (e.online ? "online" : "offline") : "client";
    rows.push([
      e.name,
      e.kind,
      e.kind === "client" ? (e.online ? "connected" : "-") : state,
      e.port === undefined || e.port === null ? "-" : String(e.port),
      e.connectedSince ?? "-",
      "revokedAt" in e && e.revokedAt ? `revoked ${e.revokedAt}` : (e.lastSeen ?? "-"),
      e.fingerprint,
      e.kind === "client" ? (e.all ? "(all)" : (e.devices ?? []).join(",") || "-") : "",
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n")}\n`;
}

/** Pure: the one summary line on stderr after the table. */
export function summaryLine(s: FleetStatus): string {
  const devices = s.entries.filter((e) => e.kind === "device");
  const online = devices.filter((d) => d.state === "online").length;
  const live = devices.filter((d) => d.state !== "revoked").length;
  const revoked = devices.length - live;
  return `${online}/${live} devices online${revoked ? `, ${revoked} revoked` : ""}${s.allOnline ? "" : ` (exit ${EXIT.offline}: not all online)`}`;
}
