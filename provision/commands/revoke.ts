// `revoke-device NAME`: the relay's `remove` is what holds (the key stops working at once and
// the device's live sessions, and every laptop session through them, are ended). Before it,
// while the tunnel still carries us, the device is cleaned up best effort: its key deleted
// and its agent stopped. A device that can't be reached gets a warning and is revoked all the
// same. Last, this laptop's Host block and pinned host key for it are removed (through the
// laptop model, so every other block and option stays): planned, and the files checked
// writable, before the relay is touched.
import { agentPath, AGENT_CONTAINER } from "../../lib/contract/agent.ts";
import { loadCa } from "../ca/ca.ts";
import { readDeviceRecords, updateDeviceRecord } from "../ca/records.ts";
import { cleanupDevice } from "../device/commands.ts";
import { SSHD_DROP_IN } from "../device/sshd.ts";
import { ExitError, EXIT } from "../errors.ts";
import { applyLaptop, planLaptopWrites } from "../laptop/files.ts";
import { hostKeyAlias, validateDeviceName, withoutDevice } from "../laptop/model.ts";
import { unconfirmedCutWarning } from "../relay/admin.ts";
import { replay, revokedDevices } from "../relay/history.ts";
import { closeMaster, deviceThroughTunnel, openFleet, readLaptopSide, withRelay, type FleetOptions } from "./fleet.ts";

export interface RevokeOptions extends FleetOptions {
  name: string;
  /** don't try to reach the device (it is lost, or stolen and off) */
  skipDevice?: boolean;
}

export interface RevokeResult {
  revoked: string;
  /** the relay had it; false when it was revoked before (the laptop side is still cleaned) */
  removedFromRelay: boolean;
  /** key deleted and agent stopped on the device */
  deviceCleaned: boolean;
  /** the device's sshd files changed (its rtunnel drop-in removed, and the Include line enrollment added) */
  deviceSshd: string[];
  warnings: string[];
  laptop: string[];
}

export async function revokeDevice(o: RevokeOptions): Promise<RevokeResult> {
  const name = validateDeviceName(o.name);
  const f = await openFleet(o);
  // This laptop's side, planned before the relay is touched: a file that can't be replaced stops here.
  const { state, model } = await readLaptopSide(f);
  const local = model.devices.get(name);
  const known = local !== undefined || model.known.some((l) => "entry" in l && l.entry.pattern === hostKeyAlias(name));
  const plan = known ? planLaptopWrites(f.paths, state, withoutDevice(model, name), { include: false }) : { writes: [], backup: false };
  const warnings: string[] = [];
  const warn = (line: string) => {
    warnings.push(line);
    f.log(line);
  };

  let deviceSshd: string[] = [];
  const { removedFromRelay, deviceCleaned } = await withRelay(f, async (relay) => {
    const registry = await relay.list();
    const entry = registry.find((e) => e.name === name);
    if (entry && entry.kind !== "device") throw new ExitError(EXIT.usage, `${name} is a client: use remove-client ${name}`);
    if (!entry) {
      const before = revokedDevices(replay(await relay.audit()), registry).some((r) => r.name === name);
      if (!before && !local) throw new ExitError(EXIT.usage, `no device named ${name} on the relay or in ${f.paths.fragment} (see \`status\`)`);
      f.log(`${name} is not on the relay (revoked before): cleaning this laptop's side only`);
      return { removedFromRelay: false, deviceCleaned: false };
    }
    let cleaned = false;
    if (o.skipDevice) warn(`warning: --skip-device: the device ${name} keeps its key and agent; its key no longer works on the relay`);
    else if (!local) warn(`warning: this laptop has no Host block for ${name}: the device keeps its key and agent (they no longer work on the relay)`);
    else {
      try {
        const t = await deviceThroughTunnel(f, model, { ...local, port: entry.port });
        try {
          await t.device.useRoot();
          // The sshd drop-in first, while the tunnel still carries us (a reload keeps this session).
          try {
            const sshd = await t.device.removeSshdDropIn();
            deviceSshd = sshd.changed;
            for (const w of sshd.warnings) warn(w);
            if (sshd.changed.length) f.log(`device ${name}: sshd: removed ${sshd.changed.join(", ")} (${sshd.how ?? "reloaded"})`);
          } catch (e) {
            warn(`warning: the device ${name}'s sshd drop-in was not removed (${e instanceof Error ? e.message : String(e)}): remove ${SSHD_DROP_IN} by hand (then sudo sshd -t && sudo systemctl reload ssh)`);
          }
          cleaned = (await t.device.run(cleanupDevice(), { root: true })).stdout.includes("cleaned");
          f.log(`device ${name}: key deleted, agent stopping`);
        } finally {
          t.dispose();
        }
      } catch (e) {
        warn(`warning: the device ${name} could not be cleaned up (${e instanceof Error ? e.message : String(e)}): it keeps its key and agent, which no longer work on the relay; remove them by hand (sudo docker rm -f ${AGENT_CONTAINER}; sudo rm ${agentPath("key")}*; and its sshd drop-in: sudo rm ${SSHD_DROP_IN} && sudo systemctl reload ssh) when you can`);
      }
    }
    f.log(`relay: removing ${name} (${entry.fingerprint}); its sessions end now`);
    const cut = unconfirmedCutWarning(name, await relay.remove(name));
    if (cut) warn(cut);
    return { removedFromRelay: true, deviceCleaned: cleaned };
  });

  // Last, this laptop: the Host block and the pinned host key (or its CA line); a live master
  // goes too; and the CA's record of the device (its host certificate and KRL version).
  const laptop = await applyLaptop(f.paths, plan);
  const ca = await loadCa(f.paths.sshDir);
  if (ca && (await readDeviceRecords(ca.paths))[name]) await updateDeviceRecord(ca.paths, name, undefined);
  await closeMaster(f);
  return { revoked: name, removedFromRelay, deviceCleaned, deviceSshd, warnings, laptop };
}
