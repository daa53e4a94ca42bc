// `rotate-key NAME`: a new device key, made on the device, replaces the old one with the
// device away for about one reconnect, and the laptops' files untouched (the relay's
// `add-device --replace` keeps the port; the device's host key does not change).
//
// The agent reads its keys before every connection and offers id_ed25519.previous after
// id_ed25519 (images/rtunnel/README.md), so, through the device's own tunnel:
//  1. the new key is made on the device (id_ed25519.new);
//  2. it is renamed into place, the current key kept as id_ed25519.previous: the live
//     session goes on, and any reconnect still has a key the relay takes;
//  3. the relay replaces the key (`add-device --replace`): the old key stops working, its
//     session is ended, the agent reconnects with the new key;
//  4. once the relay sees the new key online, the previous key is deleted (through the new tunnel).
// If the relay refuses in 3, the old session was never cut: the previous key goes back in
// place at once, and nothing changed.
import { AGENT_CONTAINER } from "../../lib/contract/agent.ts";
import { parsePublicKey } from "../../lib/keys.ts";
import { dropPreviousKey, makeNewKey, restorePreviousKey, swapInNewKey } from "../device/commands.ts";
import { ExitError, EXIT } from "../errors.ts";
import { validateDeviceName } from "../laptop/model.ts";
import type { AuditEvent, ConnectionEvent } from "../relay/protocol.ts";
import { validatePort } from "../validate.ts";
import { deviceThroughTunnel, openFleet, readLaptopSide, withRelay, type FleetOptions } from "./fleet.ts";

export interface RotateOptions extends FleetOptions {
  name: string;
  /** seconds to wait for the device to come back with its new key */
  timeout?: number | string;
}

export interface RotateResult {
  name: string;
  port: number;
  oldFingerprint: string;
  newFingerprint: string;
  /** from the relay's replace to the relay seeing the new key's session */
  backAfterMs: number;
  warnings: string[];
}

/** Pure: what the relay's records say about a rotation that did not finish. */
export function rotationStall(events: readonly AuditEvent[], o: { oldFingerprint: string; newFingerprint: string; since: string }): string {
  const after = events.filter((e): e is ConnectionEvent => e.type === "connection" && e.time >= o.since.slice(0, 19));
  const old = after.filter((e) => e.fingerprint === o.oldFingerprint);
  const fresh = after.filter((e) => e.fingerprint === o.newFingerprint && !e.refused);
  const held = after.filter((e) => e.fingerprint === o.newFingerprint && e.refused === "limit");
  if (held.length && !fresh.length) return `the relay refused the new key ${held.length} time(s) for holding its limit of live connections: other connections with the device's key are open (a stolen key? see \`audit\`)`;
  if (fresh.length) return `the relay accepted the new key ${fresh.length} time(s) but the tunnel is not held: the agent's forward may be failing`;
  if (old.length) {
    return `the device still offers its old key (refused ${old.length} time(s) since the switch, last at ${old.at(-1)!.time}): the new key was not moved into place on the device`;
  }
  return "the relay has seen no connection from the device since the switch: it may be offline, or unable to reach the relay";
}

export async function rotateKey(o: RotateOptions): Promise<RotateResult> {
  const name = validateDeviceName(o.name);
  const timeout = validatePort(o.timeout ?? 60, "--timeout");
  const f = await openFleet(o);
  const { model } = await readLaptopSide(f);
  const local = model.devices.get(name);
  if (!local) throw new ExitError(EXIT.usage, `this laptop has no Host block for ${name} (${f.paths.fragment}): rotate from the laptop that enrolled it`);
  const warnings: string[] = [];

  return withRelay(f, async (relay) => {
    const entry = (await relay.list()).find((e) => e.name === name);
    if (!entry || entry.kind !== "device") throw new ExitError(EXIT.usage, `no device named ${name} on the relay (see \`status\`)`);
    if (!entry.online) throw new ExitError(EXIT.device, `the device ${name} is offline: its key can only be rotated while its tunnel is up`);
    const target = { ...local, port: entry.port };

    const t = await deviceThroughTunnel(f, model, target);
    let fresh;
    try {
      await t.device.useRoot();
      fresh = parsePublicKey((await t.device.run(makeNewKey(name), { root: true })).stdout.trim(), "the new device key");
      f.log(`device ${name}: new key ${fresh.fingerprint} made on the device`);
      await t.device.run(swapInNewKey(), { root: true });
      try {
        const added = await relay.addDevice(name, fresh, { replace: true });
        if (added.port !== entry.port) throw new ExitError(EXIT.relay, `the relay moved ${name} from port ${entry.port} to ${added.port}: laptops' configs need enroll-device again`);
      } catch (e) {
        // The old key still works, so the tunnel (and this connection) is still up: undo at once.
        await t.device.run(restorePreviousKey(), { root: true }).catch(() => undefined);
        throw e;
      }
    } finally {
      t.dispose();
    }
    const replacedAt = Date.now();
    f.log(`relay: ${name} now takes ${fresh.fingerprint} only (port ${entry.port}); waiting for the agent to reconnect`);
    const deadline = replacedAt + timeout * 1000;
    for (;;) {
      const now = (await relay.list()).find((e) => e.name === name);
      if (now?.online && now.connectedSince && now.fingerprint === fresh.fingerprint) break;
      if (Date.now() > deadline) {
        const seen = rotationStall(await relay.audit().catch(() => []), { oldFingerprint: entry.fingerprint, newFingerprint: fresh.fingerprint, since: new Date(replacedAt - 1000).toISOString() });
        throw new ExitError(EXIT.timeout, `${name} did not come back with its new key within ${timeout} s: ${seen} (the relay takes only ${fresh.fingerprint} now; on the device: sudo docker logs ${AGENT_CONTAINER})`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    const backAfterMs = Date.now() - replacedAt;
    // The old key is refused by the relay from now on; it goes from the device too.
    try {
      const back = await deviceThroughTunnel(f, model, target);
      try {
        await back.device.useRoot();
        await back.device.run(dropPreviousKey(), { root: true });
      } finally {
        back.dispose();
      }
    } catch (e) {
      const line = `warning: ${name}'s previous key (refused by the relay now) is still on the device: ${e instanceof Error ? e.message : String(e)}; the next rotate-key or enrollment removes it`;
      warnings.push(line);
      f.log(line);
    }
    return { name, port: entry.port, oldFingerprint: entry.fingerprint, newFingerprint: fresh.fingerprint, backAfterMs, warnings };
  });
}
