// `audit`: who connected to which device when, from the relay's own records (its registry
// changes, and one line per connection sshd accepted or refused), with names instead of
// fingerprints. A laptop's connection names the client; the device it went on to is the one
// it was granted at that moment when there was one, else the grant list (the relay's sshd
// does not log a successful `-W` target at LogLevel VERBOSE).
import { parseKeyId } from "../../lib/contract/ca.ts";
import { replay } from "../relay/history.ts";
import type { AuditEvent, ChangeEvent, ConnectionEvent, Grant, TrustChangeEvent } from "../relay/protocol.ts";
import { openFleet, withRelay, type FleetOptions } from "./fleet.ts";
import { renderTable } from "./status.ts";

export interface AuditOptions extends FleetOptions {
  /** only events at or after this ISO time */
  since?: string;
  /** only events about this device or client */
  name?: string;
}

export interface AuditRow {
  time: string;
  /** connect (a laptop), tunnel (a device's agent), admin (the operator), refused (an unknown or revoked key, a key at its limit of live connections, a bad signature), or a registry verb */
  event: string;
  /** the client (laptops), the device (tunnels), or the name the verb changed */
  who: string;
  /** the device(s) a laptop could reach then; the device of a tunnel; a port */
  device: string;
  detail: string;
}

const short = (fp: string | undefined) => (fp ? `${fp.slice(0, 19)}...` : "-");

function changeDetail(e: ChangeEvent): string {
  switch (e.verb) {
    case "add-device":
      return `port ${e.port}${e.replaced ? `, key rotated (old ${short(e.replaced)})` : ""}`;
    case "add-client":
      return e.all ? "granted every device" : `granted ${e.devices.join(",") || "nothing"}`;
    case "remove":
      return `${e.kind} revoked, its sessions ended`;
  }
}

function trustDetail(e: TrustChangeEvent): string {
  switch (e.verb) {
    case "set-user-ca":
      return e.userCa.length ? `jump trusts the user CA ${e.userCa.map(short).join(", ")}` : "no user CA trusted";
    case "set-krl":
      return `revocation list version ${e.version} set (${e.bytes} bytes, sha256 ${e.sha256.slice(0, 16)}...)`;
  }
}

/** A certificate login: who it was granted to (its key id's NAME), the devices its grant names. */
function certificateRow(e: ConnectionEvent): AuditRow {
  const holder = e.keyId ? parseKeyId(e.keyId)?.name : undefined;
  const cert = `certificate ${e.keyId ?? "(not one of ours)"} (serial ${e.serial})`;
  if (e.refused) {
    const why = e.refused === "limit" ? `its key is at its limit of ${e.limit ?? "?"} live connection${e.limit === 1 ? "" : "s"}` : "refused (untrusted CA, revoked, expired, no grant here, or a bad signature)";
    return { time: e.time, event: "refused", who: holder ?? `unknown ${e.account} certificate`, device: "-", detail: `${cert}: ${why}` };
  }
  return { time: e.time, event: "connect", who: holder ?? "?", device: reach(e.devices), detail: `laptop with ${cert}` };
}

const reach = (g: Grant | undefined) => (g === undefined ? "?" : g === "all" ? "(any)" : g.length === 1 ? g[0]! : g.length ? `one of ${g.join(",")}` : "-");

/** Pure: names instead of fingerprints, grants replayed from the registry's own history. */
export function resolveAudit(events: readonly AuditEvent[]): AuditRow[] {
  const rows: AuditRow[] = [];
  replay(events, (e, before) => {
    if (e.type === "trust") {
      rows.push({ time: e.time, event: e.verb, who: "-", device: "-", detail: `${trustDetail(e)} (admin from ${e.from})` });
      return;
    }
    if (e.type === "connection" && e.serial !== undefined) {
      rows.push(certificateRow(e));
      return;
    }
    if (e.type === "change") {
      rows.push({ time: e.time, event: e.verb, who: e.name, device: e.verb === "add-device" ? e.name : "-", detail: `${changeDetail(e)} (admin from ${e.from})` });
      return;
    }
    const [kind, name = "?", port] = (e.key ?? "").split(":");
    if (!e.key) {
      const was = before.names.get(e.fingerprint);
      rows.push({ time: e.time, event: "refused", who: was ? `${was.kind} ${was.name} (removed)` : `unknown ${e.account} key`, device: "-", detail: `key ${short(e.fingerprint)}` });
    } else if (e.refused) {
      const why = e.refused === "limit" ? `at its limit of ${e.limit ?? "?"} live connection${e.limit === 1 ? "" : "s"}` : e.refused === "signature" ? "its signature did not verify" : "unknown key";
      rows.push({ time: e.time, event: "refused", who: kind === "admin" ? `admin key ${name}` : name, device: kind === "device" ? name : "-", detail: `${e.account} key ${why}` });
    } else if (kind === "admin") {
      rows.push({ time: e.time, event: "admin", who: `admin key ${name}`, device: "-", detail: `key ${short(e.fingerprint)}` });
    } else if (kind === "device") {
      rows.push({ time: e.time, event: "tunnel", who: name, device: name, detail: `agent connected, port ${port ?? "?"}` });
    } else {
      rows.push({ time: e.time, event: "connect", who: name, device: reach(before.grants.get(name)), detail: `laptop ${name}` });
    }
  });
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
  return renderTable([["TIME", "EVENT", "WHO", "DEVICE", "DETAIL"], ...rows.map((r) => [r.time, r.event, r.who, r.device, r.detail])]);
}
