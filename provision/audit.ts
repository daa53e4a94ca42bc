// `audit`: who connected to which device when, from the relay's own records (the `audit`
// admin verb: registry changes, and one line per connection written by the key lookup),
// with names instead of fingerprints. A laptop's connection names the client; the device it
// went on to is the one it was granted at that moment when there was one, else the grant
// list (the relay's sshd does not log a successful `-W` target at LogLevel VERBOSE).
import { openFleet, withRelay, type FleetOptions } from "./fleet.ts";
import type { AuditEvent } from "./relay.ts";

export interface AuditOptions extends FleetOptions {
  /** only events at or after this ISO time */
  since?: string;
  /** only events about this device or client */
  name?: string;
}

export interface AuditRow {
  time: string;
  /** connect (a laptop), tunnel (a device's agent), refused (an unknown or revoked key), or a registry verb */
  event: string;
  /** the client (laptops), the device (tunnels), or the name the verb changed */
  who: string;
  /** the device(s) a laptop could reach then; the device of a tunnel; a port */
  device: string;
  detail: string;
}

const short = (fp: string | undefined) => (fp ? `${fp.slice(0, 19)}...` : "-");

/** Pure: names instead of fingerprints, grants replayed from the registry's own history. */
export function resolveAudit(events: readonly AuditEvent[]): AuditRow[] {
  const grants = new Map<string, string[] | "all">(); // client → devices at that moment
  const names = new Map<string, string>(); // fingerprint → last name it was registered under
  const rows: AuditRow[] = [];
  for (const e of events) {
    if (e.type === "change") {
      const name = e.name ?? "?";
      if (e.fingerprint) names.set(e.fingerprint, `${e.verb === "add-client" ? "client" : e.kind ?? "device"} ${name}`);
      if (e.verb === "add-client") grants.set(name, e.all ? "all" : [...(e.devices ?? [])]);
      if (e.verb === "remove") {
        if (e.kind === "client") grants.delete(name);
        else for (const [c, g] of grants) if (g !== "all") grants.set(c, g.filter((d) => d !== name));
      }
      const detail =
        e.verb === "add-device" ? `port ${e.port ?? "?"}${e.replaced ? `, key rotated (old ${short(e.replaced)})` : ""}` :
        e.verb === "add-client" ? (e.all ? "granted every device" : `granted ${(e.devices ?? []).join(",") || "nothing"}`) :
        e.verb === "remove" ? `${e.kind ?? ""} revoked, its sessions ended` : "";
      rows.push({ time: e.time, event: e.verb ?? "change", who: name, device: e.verb === "add-device" ? name : "-", detail: `${detail} (admin from ${e.from ?? "?"})` });
      continue;
    }
    if (e.type !== "connection") continue;
    const [kind, name = "?", port] = (e.key ?? "").split(":");
    if (!e.key) {
      const was = e.fingerprint ? names.get(e.fingerprint) : undefined;
      rows.push({ time: e.time, event: "refused", who: was ? `${was} (removed)` : `unknown ${e.account ?? ""} key`, device: "-", detail: `key ${short(e.fingerprint)}` });
    } else if (kind === "device") {
      rows.push({ time: e.time, event: "tunnel", who: name, device: name, detail: `agent connected, port ${port ?? "?"}` });
    } else {
      const g = grants.get(name);
      const device = g === undefined ? "?" : g === "all" ? "(any)" : g.length === 1 ? g[0]! : g.length ? `one of ${g.join(",")}` : "-";
      rows.push({ time: e.time, event: "connect", who: name, device, detail: `laptop ${name}` });
    }
  }
  return rows;
}

export function filterAudit(rows: readonly AuditRow[], o: { since?: string; name?: string }): AuditRow[] {
  return rows.filter((r) => (!o.since || r.time >= o.since) && (!o.name || r.who === o.name || r.device === o.name || r.device.split(/[ ,]/).includes(o.name) || r.who.startsWith(`device ${o.name} `)));
}

export async function auditRelay(o: AuditOptions): Promise<AuditRow[]> {
  const events = await withRelay(await openFleet(o), (relay) => relay.audit());
  return filterAudit(resolveAudit(events), o);
}

export function renderAudit(rows: readonly AuditRow[]): string {
  const table = [["TIME", "EVENT", "WHO", "DEVICE", "DETAIL"], ...rows.map((r) => [r.time, r.event, r.who, r.device, r.detail])];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  return `${table.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n")}\n`;
}
