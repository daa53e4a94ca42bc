// `rotate-key NAME`: a new device key, made on the device, replaces the old one with the
// device unreachable for about one reconnect, and the laptops' files untouched (the relay's
// `add-device --replace` keeps the port; the device's host key does not change).
//
// Order, through the device's own tunnel:
//  1. the new key is made on the device next to the old one (id_ed25519.new);
//  2. a small detached job on the device waits for the agent to lose its session, then moves
//     the new key into place (atomic rename) and restarts the agent: the agent reads its key
//     only when it starts, so until then it keeps the old one;
//  3. the relay replaces the key (`add-device --replace`): the old key stops working and its
//     session is ended, which is the job's signal. The agent comes back with the new key.
//  If the relay refuses, the old key never stops working, the session is never lost, and the
//  job gives up after 30 s and deletes the new key: nothing changed.
import { DEVICE_KEY, AGENT_CONTAINER } from "./device.ts";
import { ExitError, EXIT } from "./errors.ts";
import { deviceThroughTunnel, laptopDevices, openFleet, withRelay, type FleetOptions } from "./fleet.ts";
import type { AuditEvent } from "./relay.ts";
import { sh } from "./proc.ts";
import { validateDeviceName } from "./sshConfig.ts";
import { parsePublicKey, validatePort } from "./validate.ts";

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
}

const NEW = `${DEVICE_KEY}.new`;

export function newKeyScript(name: string): string {
  return ["set -e", "umask 077", `rm -f ${NEW} ${NEW}.pub`, `ssh-keygen -q -t ed25519 -N '' -C ${sh(`rtunnel-${name}`)} -f ${NEW}`, `cat ${NEW}.pub`].join("\n");
}

/** The detached job of step 2 (runs as root on the device). */
export function switchScript(): string {
  const job = [
    "start=$(date +%s)",
    "i=0",
    "while [ $i -lt 150 ]; do",
    `  if docker logs --since "$start" ${AGENT_CONTAINER} 2>&1 | grep -q 'lost:'; then`,
    `    mv -f ${NEW} ${DEVICE_KEY} && mv -f ${NEW}.pub ${DEVICE_KEY}.pub && docker restart -t 1 ${AGENT_CONTAINER}`,
    "    exit 0",
    "  fi",
    "  sleep 0.2; i=$((i+1))",
    "done",
    `rm -f ${NEW} ${NEW}.pub`,
  ].join("\n");
  return `setsid sh -c ${sh(job)} >/dev/null 2>&1 </dev/null &\necho started`;
}

/** Pure: what the relay's records say about a rotation that did not finish. */
export function rotationStall(events: readonly AuditEvent[], o: { oldFingerprint: string; newFingerprint: string; since: string }): string {
  const after = events.filter((e) => e.type === "connection" && e.time >= o.since.slice(0, 19));
  const old = after.filter((e) => e.fingerprint === o.oldFingerprint);
  const fresh = after.filter((e) => e.fingerprint === o.newFingerprint);
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
  const local = (await laptopDevices(f.paths)).find((d) => d.name === name);
  if (!local) throw new ExitError(EXIT.usage, `this laptop has no Host block for ${name} (${f.paths.fragment}): rotate from the laptop that enrolled it`);

  return withRelay(f, async (relay) => {
    const entry = (await relay.list()).find((e) => e.name === name);
    if (!entry || entry.kind !== "device") throw new ExitError(EXIT.usage, `no device named ${name} on the relay (see \`status\`)`);
    if (!entry.online) throw new ExitError(EXIT.device, `the device ${name} is offline: its key can only be rotated while its tunnel is up`);
    const port = entry.port ?? local.port;

    const t = await deviceThroughTunnel(f, { ...local, port });
    let fresh;
    try {
      await t.device.detectSudo();
      fresh = parsePublicKey((await t.device.run(newKeyScript(name), { root: true })).stdout.trim(), "the new device key");
      f.log(`device ${name}: new key ${fresh.fingerprint} made on the device`);
      await t.device.run(switchScript(), { root: true });
      try {
        const added = await relay.addDevice(name, `${fresh.type} ${fresh.base64}`, { replace: true });
        if (added.port !== port) throw new ExitError(EXIT.relay, `the relay moved ${name} from port ${port} to ${added.port}: laptops' configs need enroll-device again`);
      } catch (e) {
        // The old key still works, so the tunnel (and this connection) is still up: undo at once.
        await t.device.run(`rm -f ${NEW} ${NEW}.pub`, { root: true }).catch(() => undefined);
        throw e;
      }
    } finally {
      t.dispose();
    }
    const replacedAt = Date.now();
    f.log(`relay: ${name} now takes ${fresh.fingerprint} only (port ${port}); waiting for the agent to reconnect`);
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
    return { name, port, oldFingerprint: entry.fingerprint, newFingerprint: fresh.fingerprint, backAfterMs: Date.now() - replacedAt };
  });
}
