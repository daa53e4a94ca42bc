// One replay of the relay's audit (its registry changes and the connections sshd accepted or
// refused, oldest first): who held which key, who was granted what at each moment, and which
// devices were revoked. `status` reads the end state, `audit` every step. Pure.
import type { AuditEvent, ChangeEvent, Grant, Listing } from "./protocol.ts";

export interface HistoryState {
  /** client → the devices it could reach at this moment */
  grants: Map<string, Grant>;
  /** fingerprint → the last name and kind it was registered under */
  names: Map<string, { kind: "device" | "client"; name: string }>;
  /** device → its last add-device or remove */
  lastDeviceChange: Map<string, ChangeEvent>;
}

/** Replays `events` in order; `visit` sees each event with the state just before it. */
export function replay(events: readonly AuditEvent[], visit?: (e: AuditEvent, before: HistoryState) => void): HistoryState {
  const s: HistoryState = { grants: new Map(), names: new Map(), lastDeviceChange: new Map() };
  for (const e of events) {
    visit?.(e, s);
    if (e.type !== "change") continue;
    switch (e.verb) {
      case "add-device":
        s.names.set(e.fingerprint, { kind: "device", name: e.name });
        s.lastDeviceChange.set(e.name, e);
        // A name taken by a device is no client's any more.
        s.grants.delete(e.name);
        break;
      case "add-client":
        s.names.set(e.fingerprint, { kind: "client", name: e.name });
        s.grants.set(e.name, e.all ? "all" : [...e.devices]);
        if (s.lastDeviceChange.get(e.name)?.verb === "remove") s.lastDeviceChange.delete(e.name);
        break;
      case "remove":
        if (e.kind === "client") s.grants.delete(e.name);
        else {
          s.lastDeviceChange.set(e.name, e);
          for (const [client, g] of s.grants) if (g !== "all") s.grants.set(client, g.filter((d) => d !== e.name));
        }
        break;
    }
  }
  return s;
}

export interface RevokedDevice {
  name: string;
  fingerprint: string;
  revokedAt: string;
}

/** Devices whose last registry change was a `remove` and that are not registered again. */
export function revokedDevices(s: HistoryState, registry: readonly Listing[]): RevokedDevice[] {
  const present = new Set(registry.map((r) => r.name));
  return [...s.lastDeviceChange]
    .filter(([name, e]) => e.verb === "remove" && !present.has(name))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, e]) => ({ name, fingerprint: e.fingerprint, revokedAt: e.time }));
}
