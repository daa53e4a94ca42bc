// Pure decisions about the relay's registry (the entries of its `list`). The relay holds each
// key under one name only, so a key already registered under another name must be found
// before anything is changed: enroll-device reuses that client name, add-client refuses.
import { ExitError, EXIT } from "../errors.ts";
import type { ClientListing, Listing } from "./protocol.ts";

/** The entry that holds this key under a name other than `name`, if any. */
export function keyHeldElsewhere(registry: readonly Listing[], fingerprint: string, name: string): Listing | undefined {
  return registry.find((e) => e.fingerprint === fingerprint && e.name !== name);
}

/**
 * The client name enrollment registers the operator's key under. A key the relay already
 * holds as another client keeps that name (the default `laptop-HOSTNAME` changes with the
 * hostname); `reused` says so. Refused, before any change: a name held by another key or by a
 * device; an explicit --client when the key is registered under another name; the key
 * registered as a device.
 */
export function enrollClientName(
  registry: readonly Listing[],
  o: { fingerprint: string; wanted: string; explicit: boolean },
): { client: string; entry?: ClientListing; reused: boolean } {
  const other = keyHeldElsewhere(registry, o.fingerprint, o.wanted);
  if (other && other.kind !== "client") {
    throw new ExitError(EXIT.relay, `your key (${o.fingerprint}) is registered on the relay as ${other.kind} ${other.name}: a laptop needs a key of its own (pass --identity FILE)`);
  }
  if (other && o.explicit) {
    throw new ExitError(EXIT.relay, `your key (${o.fingerprint}) is already registered on the relay as client ${other.name}: pass --client ${other.name} (or leave --client out)`);
  }
  if (other?.kind === "client") return { client: other.name, entry: other, reused: true };
  const entry = registry.find((e) => e.name === o.wanted);
  if (entry && (entry.kind !== "client" || entry.fingerprint !== o.fingerprint)) {
    throw new ExitError(EXIT.relay, `the client name ${o.wanted} is already taken on the relay by another ${entry.kind === "client" ? "key" : entry.kind} (${entry.fingerprint}): pass --client NAME`);
  }
  return { client: o.wanted, ...(entry?.kind === "client" ? { entry } : {}), reused: false };
}
