// `list` / `status`: the relay's registry (devices and clients: online, port, live connections
// against the key's limit, connected since, last seen, last refusal, fingerprint) plus the
// devices revoked with `revoke-device`. A device is online only when its own sshd answers
// through the tunnel; a tunnel that listens on the relay with nobody answering is "no answer". A revoked device is
// gone from the registry; the relay's own audit (history.ts replays it) still records its
// `remove`, so "revoked" is read from the relay, not kept on this laptop: every operator sees
// the same fleet. Exit code: 0 when every (not revoked) device is online.
//
// With fleet certificates (issue 15), from the CA's records on this machine (rtunnel-ca/
// devices.json, revoked.json): each device's host certificate (days left; a warning under 14)
// and the KRL version it has, so the devices that missed a revocation (offline when it was
// pushed) are listed as "KRL behind". Without a CA the table and --json are as before.
// Certificate logins on the relay (laptops with a `grant` or `login` certificate) follow the
// clients, one row per certificate with live connections: who holds it, its serial, its grant.
import type { DeviceCaRecords } from "../../lib/contract/ca.ts";
import { loadCa } from "../ca/ca.ts";
import { readDeviceRecords, readRevoked } from "../ca/records.ts";
import { deviceCertStatus, hostCertCell, krlCell, type DeviceCertStatus } from "../device/certs.ts";
import { EXIT } from "../errors.ts";
import { replay, revokedDevices } from "../relay/history.ts";
import type { AuditEvent, CertificateListing, ClientListing, DeviceListing, Listing } from "../relay/protocol.ts";
import { openFleet, withRelay, type FleetOptions } from "./fleet.ts";

export type ListOptions = FleetOptions;

export type StatusEntry =
  | (DeviceListing & { state: "online" | "no-answer" | "offline"; certificates?: DeviceCertStatus })
  | { kind: "device"; name: string; fingerprint: string; state: "revoked"; revokedAt: string; port: null; online: false; connectedSince: null; lastSeen: null; connections: 0; limit: null; lastRefused: null }
  | (ClientListing & { state: "client" })
  | (CertificateListing & { state: "certificate"; /** its holder (the key id's NAME) */ name: string });

export interface FleetStatus {
  entries: StatusEntry[];
  /** every device in the registry is online (revoked ones don't count) */
  allOnline: boolean;
  /** with a fleet CA: the newest KRL version, the devices without it, and those with no certificates at all */
  certificates?: { krlVersion: number; krlBehind: string[]; uncertified: string[]; hostCertWarnings: string[] };
}

/** The CA's records that status reads: none without a CA. */
export interface CaFacts {
  records: DeviceCaRecords;
  /** the newest KRL version (revoked.json) */
  krlVersion: number;
  now: Date;
}

/** Pure: the registry plus the revoked devices, each with its state (and its certificates, with a CA). */
export function fleetStatus(registry: readonly Listing[], events: readonly AuditEvent[], ca?: CaFacts, certificates: readonly CertificateListing[] = []): FleetStatus {
  const devices = registry.filter((e): e is DeviceListing => e.kind === "device");
  const clients = registry.filter((e): e is ClientListing => e.kind === "client");
  const revoked = revokedDevices(replay(events), registry);
  const certs = new Map(ca ? devices.map((d) => [d.name, deviceCertStatus(ca.records[d.name], ca.krlVersion, ca.now)] as const) : []);
  return {
    ...(ca ? { certificates: certificateSummary(certs, ca.krlVersion) } : {}),
    entries: [
      ...devices.map((d) => ({ ...d, state: deviceState(d), ...(certs.has(d.name) ? { certificates: certs.get(d.name)! } : {}) })),
      ...revoked.map((r) => ({
        kind: "device" as const, name: r.name, fingerprint: r.fingerprint, state: "revoked" as const, revokedAt: r.revokedAt,
        port: null, online: false as const, connectedSince: null, lastSeen: null, connections: 0 as const, limit: null, lastRefused: null,
      })),
      ...clients.map((c) => ({ ...c, state: "client" as const })),
      ...certificates.map((c) => ({ ...c, state: "certificate" as const, name: c.holder })),
    ],
    allOnline: devices.every((d) => d.online),
  };
}

function certificateSummary(certs: ReadonlyMap<string, DeviceCertStatus>, krlVersion: number): NonNullable<FleetStatus["certificates"]> {
  const hostCertWarnings: string[] = [];
  for (const [name, c] of certs) {
    if (!c.hostCert) continue;
    if (c.hostCert.state === "expired") hostCertWarnings.push(`warning: ${name}'s host certificate expired on ${c.hostCert.validBefore}: laptops that trust the host CA refuse it; enroll it again to renew`);
    else if (c.hostCert.state === "warn") hostCertWarnings.push(`warning: ${name}'s host certificate expires in ${c.hostCert.daysLeft} days (${c.hostCert.validBefore}): enroll it again to renew`);
  }
  for (const [name, c] of certs) if (c.clock) hostCertWarnings.push(`warning: ${name}: ${c.clock.problem} (measured ${c.clock.measuredAt}); a certificate login refused there is refused for that`);
  const names = (f: (c: DeviceCertStatus) => boolean) => [...certs].filter(([, c]) => f(c)).map(([n]) => n).sort();
  return { krlVersion, krlBehind: names((c) => c.krlBehind), uncertified: names((c) => !c.certified), hostCertWarnings };
}

const deviceState = (d: DeviceListing) => (d.online ? ("online" as const) : d.listening ? ("no-answer" as const) : ("offline" as const));

export async function statusRelay(o: ListOptions): Promise<FleetStatus> {
  const f = await openFleet(o);
  const ca = await loadCa(f.paths.sshDir);
  const caFacts = ca ? { records: await readDeviceRecords(ca.paths), krlVersion: (await readRevoked(ca.paths)).version, now: new Date() } : undefined;
  return withRelay(f, async (relay) => {
    const { registry, certificates } = await relay.listWithCertificates();
    return fleetStatus(registry, await relay.audit(), caFacts, certificates);
  });
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

/** Pure: the human table (two more columns, HOST CERT and KRL, when the fleet has a CA). */
export function renderList(entries: readonly StatusEntry[], certs?: FleetStatus["certificates"]): string {
  const head = ["NAME", "KIND", "STATE", "PORT", "CONNS", "CONNECTED SINCE", "LAST SEEN", "LAST REFUSED", "FINGERPRINT", "DEVICES"];
  const rows = [certs ? [...head.slice(0, 4), "HOST CERT", "KRL", ...head.slice(4)] : head];
  for (const e of entries) {
    if (e.kind === "certificate") {
      // Who holds it and its serial, where a registry row has its name; its certified key's fingerprint.
      const cells = [`${e.holder} (serial ${e.serial})`, e.kind, "connected", "-", `${e.connections}/${e.limit ?? "?"}`, e.connectedSince, "-", "-", e.keyFingerprint, e.devices.join(",") || "-"];
      rows.push([...cells.slice(0, 4), ...(certs ? ["-", "-"] : []), ...cells.slice(4)]);
      continue;
    }
    const c = e.kind === "device" && "certificates" in e ? e.certificates : undefined;
    const certCells = certs ? [c ? hostCertCell(c) : "-", c ? krlCell(c, certs.krlVersion) : "-"] : [];
    const cells = [
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
    ];
    rows.push([...cells.slice(0, 4), ...certCells, ...cells.slice(4)]);
  }
  return renderTable(rows);
}

/** Pure: the certificate lines on stderr after the summary (host certificates to renew, devices behind on the KRL, clocks). */
export function certificateLines(s: FleetStatus): string[] {
  const c = s.certificates;
  if (!c) return [];
  return [
    ...c.hostCertWarnings,
    ...(c.krlBehind.length ? [`KRL behind (not version ${c.krlVersion}): ${c.krlBehind.join(", ")}: offline when it was pushed; \`npm run revoke-cert -- --push\` (or enrolling again) brings them up to date`] : []),
    ...(c.uncertified.length ? [`no fleet certificates (enrolled before the CA, or from another laptop): ${c.uncertified.join(", ")}: they take no certificate and no KRL; enroll them again from here with the CA loaded`] : []),
  ];
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
