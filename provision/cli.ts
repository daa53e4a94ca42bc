// The operator's CLI: `npm run enroll-device -- raspi --host 192.168.1.23 --user pi`,
// `npm run status`, `npm run add-client`, `revoke-device`, `remove-client`, `rotate-key`, `audit`,
// and the fleet certificates' `ca`, `grant`, `login`, `revoke-cert`. The parser only declares;
// commands are the exported functions of their modules; this file is the one place that exits.
import { pathToFileURL } from "node:url";
import { Command, CommanderError, Option } from "commander";
import { enrollDevice, renderPlan } from "./commands/enroll.ts";
import { ExitError, EXIT } from "./errors.ts";
import { auditRelay, renderAudit } from "./commands/audit.ts";
import { addClient, removeClient } from "./commands/clients.ts";
import { certificateLines, renderList, statusExitCode, statusRelay, summaryLine } from "./commands/status.ts";
import { revokeDevice } from "./commands/revoke.ts";
import { rotateKey } from "./commands/rotate.ts";
import { InputError } from "../lib/input.ts";
import { USER_CERT_LIFETIME } from "../lib/contract/ca.ts";
import { PASSPHRASE_FILE_ENV } from "./ca/askpass.ts";
import { caInit, caInspect, caLoad, caPush, caShow, renderCaInspect, renderCaShow } from "./commands/ca.ts";
import { grant, login, type CertResult } from "./commands/grant.ts";
import { revokeCert } from "./commands/revokeCert.ts";

const err = (line: string) => process.stderr.write(`${line}\n`);

type Opts = Record<string, string | boolean | undefined>;
const fleet = (o: Opts) => ({ relayFile: o.relay as string | undefined, identity: o.identity as string | undefined, sshDir: o.sshDir as string | undefined, log: err });

const printJson = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

/** The human summary of a certificate just issued (grant, login). */
const certLine = (r: CertResult) => `${r.keyId}: ${r.devices.join(", ")} until ${r.validBefore} (${r.lifetime}; valid from ${r.validAfter}) → ${r.certificateFile}`;

/** A non-zero exit that was already explained on stdout/stderr (status: not every device online). */
class Quiet extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

function common(cmd: Command): Command {
  return cmd
    .option("--relay <file>", "relay facts JSON {host, port, hostKey} (default: `pulumi stack output --json`)")
    .option("--identity <file>", "your private key; its .pub is what the device and the relay authorize (default: SSH_DIR/id_ed25519)")
    .option("--ssh-dir <dir>", "where the laptop side lives (default: ~/.ssh)")
    .option("--json", "machine-readable result on stdout (progress stays on stderr)");
}

export function program(): Command {
  const p = new Command("rtunnel")
    .description("Operator commands of the rtunnel kit: SSH into a device behind NAT through a relay.")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showHelpAfterError("(run with --help for usage)");

  common(
    p
      .command("enroll-device")
      .description("enroll a device: device key, relay registration, tunnel agent, then your ~/.ssh/config.d/rtunnel; prints the ssh line")
      .argument("<name>", "the device's name (a-z, 0-9, -), as in `ssh NAME`")
      .requiredOption("--host <address>", "the device's address on your LAN")
      .addOption(new Option("--port <port>", "the device's sshd port").default("22"))
      .option("--user <user>", "the account on the device (passwordless sudo, or root)", "pi")
      .option("--accept-new", "first contact: trust the device's host key as it is now (the fingerprint is printed)")
      .option("--device-host-key <pin>", "the device's host key: SHA256:... fingerprint or public key line")
      .option("--image <ref>", "the device agent image, used as it is (built only when missing); default: rtunnel/rtunnel:latest-PLATFORM, built from images/rtunnel every time")
      .option("--platform <platform>", "build the agent image for this platform instead of the one the device's Docker runs (linux/arm64, linux/arm/v7, linux/arm/v5, linux/amd64)")
      .option("--base-image <ref>", "build the agent image on this base instead of its Dockerfile's debian:trixie-slim (a registry mirror's copy, a local image)")
      .addOption(new Option("--build-on <where>", "build the agent image here (cross-built under emulation for another architecture) or on the device (its build context sent over the same connection)").choices(["laptop", "device"]).default("laptop"))
      .option("--install-docker", "install Docker from the device's own distribution packages when it is missing")
      .option("--client <name>", "this laptop's name on the relay (default: laptop-HOSTNAME)")
      .addOption(new Option("--timeout <seconds>", "how long to wait for the tunnel").default("60"))
      .option("--no-multiplex", "one SSH connection per session to the relay (no ControlMaster); later enrollments keep it so")
      .option("--dry-run", "check everything and print what would change, change nothing"),
  ).action(async (name: string, o: Record<string, string | boolean | undefined>) => {
    const json = Boolean(o.json);
    const options = {
      name,
      host: o.host as string,
      port: o.port as string,
      user: o.user as string,
      identity: o.identity as string | undefined,
      sshDir: o.sshDir as string | undefined,
      relayFile: o.relay as string | undefined,
      acceptNew: Boolean(o.acceptNew),
      deviceHostKey: o.deviceHostKey as string | undefined,
      image: o.image as string | undefined,
      platform: o.platform as string | undefined,
      baseImage: o.baseImage as string | undefined,
      buildOn: o.buildOn as "laptop" | "device",
      installDocker: Boolean(o.installDocker),
      client: o.client as string | undefined,
      timeout: o.timeout as string,
      noMultiplex: o.multiplex === false,
      log: err,
      progress: !json,
    };
    if (o.dryRun) {
      const plan = await enrollDevice({ ...options, dryRun: true });
      process.stdout.write(json ? `${JSON.stringify(plan, null, 2)}\n` : renderPlan(plan));
      return;
    }
    const result = await enrollDevice(options);
    if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      const nothing = !result.changed.device.length && !result.changed.relay.length && !result.changed.laptop.length;
      err(nothing ? `${name} was already enrolled: nothing changed` : `enrolled ${name} (relay port ${result.port})`);
      process.stdout.write(`${result.sshCommand}\n`);
    }
  });

  common(
    p
      .command("list")
      .alias("status")
      .description("every device and client: state (online, offline, revoked), port, connected since, last seen, fingerprint; exit 0 only when every device is online (7 otherwise)"),
  ).action(async (o: Opts) => {
    const s = await statusRelay(fleet(o));
    process.stdout.write(o.json ? `${JSON.stringify(s.entries, null, 2)}\n` : renderList(s.entries, s.certificates));
    if (!o.json) err(summaryLine(s));
    for (const line of certificateLines(s)) err(line);
    const code = statusExitCode(s);
    if (code !== 0) throw new Quiet(code);
  });

  common(
    p
      .command("add-client")
      .description("authorize another laptop: its key on the relay for the chosen devices and on those devices' accounts; writes (--out) or prints its ~/.ssh files")
      .argument("<name>", "the laptop's name on the relay (a-z, 0-9, -)")
      .requiredOption("--key <file>", "the laptop's public key (its id_ed25519.pub)")
      .option("--devices <names>", "comma-separated devices it may reach (replaces its earlier list)")
      .option("--all", "every device, now and later")
      .option("--out <dir>", "write that laptop's ~/.ssh files into DIR (config, config.d/rtunnel, known_hosts.rtunnel) instead of printing them")
      .option("--windows", "that laptop runs Windows' OpenSSH: its relay hop without ControlMaster (macOS and Linux get it)")
      .option("--no-device-keys", "leave the devices' authorized_keys alone (the laptop's key is already there)"),
  ).action(async (name: string, o: Opts) => {
    if (Boolean(o.all) === Boolean(o.devices)) throw new ExitError(EXIT.usage, "give either --devices a,b or --all");
    const r = await addClient({ ...fleet(o), name, key: o.key as string, devices: o.all ? "all" : String(o.devices).split(","), out: o.out as string | undefined, windows: Boolean(o.windows), skipDeviceKeys: o.deviceKeys === false });
    if (o.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else if (r.written.length) err(`wrote ${r.written.join(", ")} (for ${r.renderedFor}): copy them into ${name}'s ~/.ssh, then \`ssh ${r.devices[0] ?? "DEVICE"}\` works there`);
    else {
      for (const [file, text] of Object.entries(r.files)) process.stdout.write(`# ---- ~/.ssh/${file} ----\n${text}`);
      err(`${name} may reach ${r.devices.join(", ")}: install the files above (for ${r.renderedFor}) in its ~/.ssh (an existing ~/.ssh/config only needs the Include line at its top)`);
    }
  });

  common(
    p
      .command("remove-client")
      .description("cut a laptop off at once: its relay key removed, its live sessions ended, its key taken off the devices it was granted")
      .argument("<name>", "the laptop's name on the relay")
      .option("--no-device-keys", "leave the devices' authorized_keys alone"),
  ).action(async (name: string, o: Opts) => {
    const r = await removeClient({ ...fleet(o), name, skipDeviceKeys: o.deviceKeys === false });
    if (o.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else err(`removed client ${name}${r.deauthorizedOn.length ? `; its key is off ${r.deauthorizedOn.join(", ")}` : ""}`);
  });

  common(
    p
      .command("revoke-device")
      .description("revoke a device at once: its relay key removed and sessions ended; its key deleted and agent stopped when it is reachable; its Host block and pinned key removed here")
      .argument("<name>", "the device")
      .option("--skip-device", "don't try to reach the device (lost or stolen)"),
  ).action(async (name: string, o: Opts) => {
    const r = await revokeDevice({ ...fleet(o), name, skipDevice: Boolean(o.skipDevice) });
    if (o.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else err(`revoked ${name}${r.deviceCleaned ? ` (device key deleted, agent stopped${r.deviceSshd.length ? ", sshd drop-in removed" : ""})` : " (the device itself was not cleaned: see the warning)"}`);
  });

  common(
    p
      .command("rotate-key")
      .description("a new device key made on the device, registered on the relay (same port), the old one revoked; the device is away for about one reconnect")
      .argument("<name>", "the device")
      .addOption(new Option("--timeout <seconds>", "how long to wait for the device to come back").default("60")),
  ).action(async (name: string, o: Opts) => {
    const r = await rotateKey({ ...fleet(o), name, timeout: o.timeout as string });
    if (o.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else err(`rotated ${name}: ${r.oldFingerprint} → ${r.newFingerprint}, back after ${(r.backAfterMs / 1000).toFixed(1)} s`);
  });

  common(
    p
      .command("audit")
      .description("who connected to which device when, and every registry change, from the relay's records, with names")
      .option("--since <time>", "only events at or after this ISO time (2026-05-01 or 2026-05-01T10:00:00Z)")
      .option("--name <name>", "only events about this device or client"),
  ).action(async (o: Opts) => {
    const since = o.since as string | undefined;
    if (since !== undefined && !/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?Z?)?$/.test(since)) throw new ExitError(EXIT.usage, `--since must be an ISO date or time like 2026-05-01T10:00:00Z (got ${JSON.stringify(since)})`);
    const rows = await auditRelay({ ...fleet(o), since, name: o.name as string | undefined });
    process.stdout.write(o.json ? `${JSON.stringify(rows, null, 2)}\n` : renderAudit(rows));
  });
  const ca = p.command("ca").description("the fleet's certificate authority on this machine: init, show, load, inspect, push (provision/ca/README.md)");
  const caCommon = (cmd: Command) => cmd.option("--ssh-dir <dir>", "the CA lives in DIR/rtunnel-ca, the laptop side in DIR (default: ~/.ssh)").option("--json", "machine-readable result on stdout (progress stays on stderr)");
  caCommon(
    ca
      .command("init")
      .description(`make the user CA and the host CA (ed25519), encrypted with a passphrase, in SSH_DIR/rtunnel-ca, with an empty revocation list; prints their fingerprints and the ssh-add line. Run again, it changes nothing and says so`)
      .option("--passphrase-file <file>", `the CA passphrase is this file's first line (mode 0600; or set ${PASSPHRASE_FILE_ENV}); else asked on the terminal; never an argument`)
      .option("--rsa", "RSA CAs (4096 bits) instead of ed25519, for sshd older than 6.5; every signature is rsa-sha2-512"),
  ).action(async (o: Opts) => {
    const r = await caInit({ sshDir: o.sshDir as string | undefined, passphraseFile: o.passphraseFile as string | undefined, rsa: Boolean(o.rsa), log: err });
    if (o.json) printJson(r);
    else {
      err(r.created ? `made the fleet CA in ${r.dir} (${r.algorithm})` : `the fleet CA in ${r.dir} exists already: nothing changed`);
      process.stdout.write(`user CA ${r.userCa.fingerprint}\nhost CA ${r.hostCa.fingerprint}\nload them into ssh-agent: ${r.sshAdd}\n`);
    }
  });
  caCommon(ca.command("show").description("the CA's fingerprints, whether ssh-agent holds them, its KRL version, how many certificates it issued")).action(async (o: Opts) => {
    const r = await caShow({ sshDir: o.sshDir as string | undefined });
    if (o.json) printJson(r);
    else process.stdout.write(renderCaShow(r));
  });
  caCommon(
    ca
      .command("load")
      .description("load both CAs into ssh-agent (SSH_AUTH_SOCK), as the ssh-add line init prints does, but with the passphrase from a file when one is given: no terminal needed")
      .option("--passphrase-file <file>", `the CA passphrase is this file's first line (mode 0600; or set ${PASSPHRASE_FILE_ENV}); else asked on the terminal`)
      .option("--for <lifetime>", "the agent forgets the CAs after this long (ssh-add -t), like 8h"),
  ).action(async (o: Opts) => {
    const r = await caLoad({ sshDir: o.sshDir as string | undefined, passphraseFile: o.passphraseFile as string | undefined, lifetime: o.for as string | undefined });
    if (o.json) printJson(r);
    else err(`ssh-agent holds the user CA and the host CA${r.lifetime ? ` for ${r.lifetime}` : ""}`);
  });
  caCommon(ca.command("inspect").description("what a certificate says (ssh-keygen -L): key id, serial, principals, validity now, and whether this CA signed and revoked it").argument("<file>", "a certificate (NAME-cert.pub)")).action(
    async (file: string, o: Opts) => {
      const r = await caInspect({ sshDir: o.sshDir as string | undefined, file });
      if (o.json) printJson(r);
      else process.stdout.write(renderCaInspect(r));
    },
  );
  common(ca.command("push").description("send the user CA key and the current KRL to the relay (set-user-ca, set-krl), and the KRL to every device enrolled from here that does not have it")).action(async (o: Opts) => {
    const r = await caPush(fleet(o));
    if (o.json) printJson(r);
    else err(`KRL version ${r.krlVersion}: relay updated; devices updated: ${r.devices.done.join(", ") || "none"}${r.devices.behind.length ? `; behind: ${r.devices.behind.map((b) => b.name).join(", ")}` : ""}`);
  });

  caCommon(
    p
      .command("grant")
      .description("a short-lived certificate for another laptop's key, signed by the user CA in ssh-agent: it may reach these devices through the relay until it expires. Written as FILE-cert.pub beside the key, or with --out into DIR with that laptop's ssh files")
      .argument("<name>", "who it is for (a-z, 0-9, -): its key id is rtunnel:NAME:SERIAL")
      .requiredOption("--key <file>", "the laptop's public key (its id_ed25519.pub)")
      .option("--devices <names>", "comma-separated devices (enrolled from this laptop) it may reach")
      .option("--all", "every device enrolled from this laptop now (a certificate never covers later ones)")
      .addOption(new Option("--for <lifetime>", "how long it is valid: 5m to 90d, like 30m, 8h, 7d (it starts 5 minutes back, for clocks behind)").default(USER_CERT_LIFETIME.grantDefault))
      .option("--out <dir>", "write DIR/KEY-cert.pub (KEY: --key without .pub) and that laptop's config, config.d/rtunnel, known_hosts.rtunnel (as add-client --out does)")
      .option("--windows", "with --out: that laptop runs Windows' OpenSSH (its relay hop without ControlMaster)")
      .option("--relay <file>", "with --out: relay facts JSON {host, port, hostKey} (default: `pulumi stack output --json`)"),
  ).action(async (name: string, o: Opts) => {
    if (Boolean(o.all) === Boolean(o.devices)) throw new ExitError(EXIT.usage, "give either --devices a,b or --all");
    const r = await grant({ ...fleet(o), name, key: o.key as string, devices: o.all ? "all" : String(o.devices).split(","), lifetime: o.for as string, out: o.out as string | undefined, windows: Boolean(o.windows) });
    if (o.json) printJson(r);
    else err(`granted ${certLine(r)}${r.written.length > 1 ? `; copy ${r.written.join(", ")} into ${name}'s ~/.ssh` : ""}`);
  });

  caCommon(
    p
      .command("login")
      .description("a short-lived certificate for this laptop's own key (--identity), for every device enrolled from here, written beside it as IDENTITY-cert.pub (ssh offers it by itself)")
      .addOption(new Option("--for <lifetime>", "how long it is valid: 5m to 90d (it starts 5 minutes back)").default(USER_CERT_LIFETIME.loginDefault))
      .option("--devices <names>", "only these devices (default: every device enrolled from here)")
      .option("--name <name>", "the name in its key id (default: laptop-HOSTNAME, as enrollment names this laptop)")
      .option("--identity <file>", "the private key whose .pub is certified (default: SSH_DIR/id_ed25519)"),
  ).action(async (o: Opts) => {
    const r = await login({ ...fleet(o), name: o.name as string | undefined, lifetime: o.for as string, devices: o.devices ? String(o.devices).split(",") : undefined });
    if (o.json) printJson(r);
    else err(`logged in: ${certLine(r)}`);
  });

  common(
    p
      .command("revoke-cert")
      .description("revoke certificates: NAME (every unexpired one issued to it) or SERIAL goes into revoked.json and the KRL, which is then sent to the relay (set-krl: it refuses them and ends their live sessions) and to the devices enrolled from here; devices it can't reach are listed and get it with --push later")
      .argument("[target]", "a name the certificates were granted to, or a serial (issued.jsonl, ssh-keygen -L)")
      .option("--push", "send the current KRL to the relay and the devices (alone: only that)")
      .option("--no-push", "only record and render the KRL here"),
  ).action(async (target: string | undefined, o: Opts) => {
    if (target === undefined && o.push !== true) throw new ExitError(EXIT.usage, "give a name or serial to revoke, or --push to send the current KRL");
    const r = await revokeCert({ ...fleet(o), target, push: o.push !== false });
    if (o.json) printJson(r);
    else if (r.relay) err(`KRL version ${r.krl.version}: relay updated; devices updated: ${r.devices?.done.join(", ") || "none"}${r.devices?.behind.length ? `; behind (next --push): ${r.devices.behind.map((b) => b.name).join(", ")}` : ""}`);
  });
  return p;
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT.usage; // commander printed it
    if (e instanceof Quiet) return e.code;
    if (e instanceof ExitError) {
      err(`rtunnel: ${e.message}`);
      return e.code;
    }
    if (e instanceof InputError) {
      err(`rtunnel: ${e.message}`);
      return EXIT.usage;
    }
    err(e instanceof Error ? (e.stack ?? e.message) : String(e));
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
