// `revoke-cert NAME|SERIAL`: the certificate(s) go into revoked.json and the KRL here, then
// the KRL goes to the relay (set-krl: it refuses them and ends their live sessions) and to
// every device this laptop enrolled that is reachable; devices.json records which version
// each has, and `revoke-cert --push` (or the next enrollment run) brings the rest up to date.
import type { Revocation } from "../../lib/contract/ca.ts";
import { requireCa, sshDirOf } from "../ca/ca.ts";
import { pushKrlToDevices, pushToRelay, type DevicesPush, type RelayPush } from "../ca/push.ts";
import { currentKrl, revoke, type Krl, type RevokeTarget } from "../ca/revocation.ts";
import { ExitError, EXIT } from "../errors.ts";
import { openFleet, readLaptopSide, type FleetOptions } from "./fleet.ts";

export interface RevokeCertOptions extends FleetOptions {
  /** a name (every unexpired certificate issued to it) or a serial; absent: only push */
  target?: string;
  /** send the KRL to the relay and the devices (default true) */
  push?: boolean;
  now?: Date;
}

export interface RevokeCertResult {
  target?: RevokeTarget;
  /** what this run added (empty: already revoked) */
  revoked: Revocation[];
  krl: { version: number; sha256: string; file: string; revoked: number };
  relay?: RelayPush;
  devices?: DevicesPush;
}

export async function revokeCert(o: RevokeCertOptions): Promise<RevokeCertResult> {
  const push = o.push ?? true;
  if (o.target === undefined && !push) throw new ExitError(EXIT.usage, "give a name or serial to revoke, or --push to send the current KRL");
  const ca = await requireCa(sshDirOf(o));
  const log = o.log ?? (() => {});
  let target: RevokeTarget | undefined;
  let revoked: Revocation[] = [];
  let krl: Krl | undefined;
  if (o.target !== undefined) {
    const r = await revoke(ca, o.target, o.now);
    krl = r.krl;
    target = r.target;
    revoked = r.added;
    log(
      r.added.length
        ? `revoked ${r.added.map((a) => a.keyId ?? `serial ${a.serial}`).join(", ")}: KRL version ${r.krl.version} (${ca.paths.krl})`
        : `${o.target} was revoked already: KRL version ${r.krl.version} unchanged`,
    );
  }
  // revoke() made the KRL under the CA's lock; only a bare --push reads the current one.
  krl ??= await currentKrl(ca);
  const out: RevokeCertResult = { ...(target ? { target } : {}), revoked, krl: { version: krl.version, sha256: krl.sha256, file: krl.file, revoked: krl.revoked } };
  if (!push) return out;

  const notPushed = (why: string, code: number = EXIT.relay) =>
    new ExitError(code, `${o.target !== undefined ? `revoked here (KRL version ${krl.version}), but ` : ""}the relay does not have KRL version ${krl.version}: ${why}; run \`npm run revoke-cert -- --push\` when it can be reached`);
  let f;
  try {
    f = await openFleet({ ...o, log });
  } catch (e) {
    // No relay facts (a usage problem): its own exit code.
    throw e instanceof ExitError ? notPushed(e.message, e.code) : e;
  }
  const { model } = await readLaptopSide(f);
  log(`relay: KRL version ${krl.version} (${krl.revoked} revoked)`);
  out.relay = await pushToRelay(f, { krl }).catch((e: unknown) => {
    throw e instanceof ExitError ? notPushed(e.message) : e;
  });
  out.devices = await pushKrlToDevices(f, ca, model, krl);
  return out;
}
