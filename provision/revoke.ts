// `revoke-device NAME`: the relay's `remove` is what holds (the key stops working at once and
// the device's live sessions, and every laptop session through them, are ended). Before it,
// while the tunnel still carries us, the device is cleaned up best effort: its key deleted
// and its agent stopped. A device that can't be reached gets a warning and is revoked all the
// same. Last, this laptop's Host block and pinned host key for it are removed: computed, and
// their files checked writable, before the relay is touched.
import { DEVICE_KEY, AGENT_CONTAINER } from "./device.ts";
import { ExitError, EXIT } from "./errors.ts";
import { deviceThroughTunnel, laptopDevices, openFleet, withRelay, type FleetOptions } from "./fleet.ts";
import { atomicWrite, checkWritable, configPaths, readLaptopFile } from "./laptop.ts";
import { revokedDevices } from "./list.ts";
import { sh } from "./proc.ts";
import { hostKeyAlias, parseKnownHosts, renderConfig, renderKnownHosts, validateDeviceName, type DeviceEntry } from "./sshConfig.ts";
import { unconfirmedCutWarning } from "./relay.ts";

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
  warnings: string[];
  laptop: string[];
}

/** The device-side cleanup: the key goes now; the agent goes 2 s later, detached, because it carries this very session. */
export function cleanupScript(): string {
  return [
    `rm -f ${DEVICE_KEY} ${DEVICE_KEY}.pub ${DEVICE_KEY}.new ${DEVICE_KEY}.new.pub`,
    `docker update --restart=no ${AGENT_CONTAINER} >/dev/null 2>&1 || true`,
    `setsid sh -c ${sh(`sleep 2; docker rm -f ${AGENT_CONTAINER}`)} >/dev/null 2>&1 </dev/null &`,
    "echo cleaned",
  ].join("\n");
}

/** Pure: this laptop's fragment and known_hosts without one device. */
export function withoutDevice(fragment: string | undefined, known: string | undefined, devices: DeviceEntry[], name: string, render: (devices: DeviceEntry[]) => string) {
  const writes: { file: "fragment" | "known"; text: string }[] = [];
  if (fragment !== undefined && devices.some((d) => d.name === name)) writes.push({ file: "fragment", text: render(devices.filter((d) => d.name !== name)) });
  if (known !== undefined) {
    const entries = parseKnownHosts(known);
    if (entries.some((e) => e.pattern === hostKeyAlias(name))) writes.push({ file: "known", text: renderKnownHosts(entries.filter((e) => e.pattern !== hostKeyAlias(name))) });
  }
  return writes;
}

/** Pure: the IdentityFile and UserKnownHostsFile the fragment was written with (kept as they are). */
export function writtenPaths(fragment: string | undefined): { identity?: string; knownHosts?: string } {
  const relay = /^Host rtunnel-relay\n((?: {2}.*\n)*)/m.exec(fragment ?? "")?.[1] ?? "";
  const get = (k: string) => [...relay.matchAll(/^ {2}(\S+) (.*)$/gm)].find((m) => m[1] === k)?.[2]?.replace(/^"(.*)"$/, "$1");
  const out: { identity?: string; knownHosts?: string } = {};
  const identity = get("IdentityFile");
  const knownHosts = get("UserKnownHostsFile");
  if (identity) out.identity = identity;
  if (knownHosts) out.knownHosts = knownHosts;
  return out;
}

export async function revokeDevice(o: RevokeOptions): Promise<RevokeResult> {
  const name = validateDeviceName(o.name);
  const f = await openFleet(o);
  const fragment = await readLaptopFile(f.paths.fragment);
  const known = await readLaptopFile(f.paths.knownHosts);
  const devices = await laptopDevices(f.paths);
  // This laptop's side, planned before the relay is touched: a file that can't be replaced stops here.
  const paths = { ...configPaths(f.paths, f.identity), ...writtenPaths(fragment) };
  const writes = withoutDevice(fragment, known, devices, name, (rest) =>
    renderConfig({ relay: { host: f.facts.host, port: f.facts.port }, identityFile: paths.identity, knownHostsFile: paths.knownHosts, devices: rest }),
  ).map((w) => ({ file: w.file === "fragment" ? f.paths.fragment : f.paths.knownHosts, text: w.text }));
  for (const w of writes) await checkWritable(w.file);
  const warnings: string[] = [];
  const warn = (line: string) => {
    warnings.push(line);
    f.log(line);
  };

  const { removedFromRelay, deviceCleaned } = await withRelay(f, async (relay) => {
    const registry = await relay.list();
    const entry = registry.find((e) => e.name === name);
    if (entry && entry.kind !== "device") throw new ExitError(EXIT.usage, `${name} is a client: use remove-client ${name}`);
    if (!entry) {
      const before = revokedDevices(await relay.audit(), registry).some((r) => r.name === name);
      if (!before && !devices.some((d) => d.name === name)) throw new ExitError(EXIT.usage, `no device named ${name} on the relay or in ${f.paths.fragment} (see \`status\`)`);
      f.log(`${name} is not on the relay (revoked before): cleaning this laptop's side only`);
      return { removedFromRelay: false, deviceCleaned: false };
    }
    let cleaned = false;
    const local = devices.find((d) => d.name === name);
    if (o.skipDevice) warn(`warning: --skip-device: the device ${name} keeps its key and agent; its key no longer works on the relay`);
    else if (!local) warn(`warning: this laptop has no Host block for ${name}: the device keeps its key and agent (they no longer work on the relay)`);
    else {
      try {
        const t = await deviceThroughTunnel(f, { ...local, port: entry.port ?? local.port });
        try {
          await t.device.detectSudo();
          const r = await t.device.run(cleanupScript(), { root: true });
          cleaned = r.stdout.includes("cleaned");
          f.log(`device ${name}: key deleted, agent stopping`);
        } finally {
          t.dispose();
        }
      } catch (e) {
        warn(`warning: the device ${name} could not be cleaned up (${e instanceof Error ? e.message : String(e)}): it keeps its key and agent, which no longer work on the relay; remove them by hand (sudo docker rm -f ${AGENT_CONTAINER}; sudo rm ${DEVICE_KEY}*) when you can`);
      }
    }
    f.log(`relay: removing ${name} (${entry.fingerprint}); its sessions end now`);
    const cut = unconfirmedCutWarning(name, await relay.remove(name));
    if (cut) warn(cut);
    return { removedFromRelay: true, deviceCleaned: cleaned };
  });

  // Last, this laptop: the Host block, then the pinned host key.
  const laptop: string[] = [];
  for (const w of writes) {
    await atomicWrite(w.file, w.text);
    laptop.push(w.file);
  }
  return { revoked: name, removedFromRelay, deviceCleaned, warnings, laptop };
}
