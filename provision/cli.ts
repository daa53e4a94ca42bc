// The operator's CLI: `npm run enroll-device -- raspi --host 192.168.1.23 --user pi`,
// `npm run list`. The parser only declares; commands are the exported functions of their
// modules; this file is the one place that exits.
import { pathToFileURL } from "node:url";
import { Command, CommanderError, Option } from "commander";
import { enrollDevice } from "./enroll.ts";
import { ExitError, EXIT } from "./errors.ts";
import { listRelay, renderList } from "./list.ts";
import { InputError } from "./validate.ts";

const err = (line: string) => process.stderr.write(`${line}\n`);

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
      .option("--image <ref>", "the device agent image (built from images/rtunnel for the device's platform when missing)", "rtunnel/rtunnel:latest")
      .option("--install-docker", "install Docker from the device's own distribution packages when it is missing")
      .option("--client <name>", "this laptop's name on the relay (default: laptop-HOSTNAME)")
      .addOption(new Option("--timeout <seconds>", "how long to wait for the tunnel").default("60")),
  ).action(async (name: string, o: Record<string, string | boolean | undefined>) => {
    const json = Boolean(o.json);
    const result = await enrollDevice({
      name,
      host: o.host as string,
      port: o.port as string,
      user: o.user as string,
      identity: o.identity as string | undefined,
      sshDir: o.sshDir as string | undefined,
      relayFile: o.relay as string | undefined,
      acceptNew: Boolean(o.acceptNew),
      deviceHostKey: o.deviceHostKey as string | undefined,
      image: o.image as string,
      installDocker: Boolean(o.installDocker),
      client: o.client as string | undefined,
      timeout: o.timeout as string,
      log: err,
      progress: !json,
    });
    if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      const nothing = !result.changed.device.length && !result.changed.relay.length && !result.changed.laptop.length;
      err(nothing ? `${name} was already enrolled: nothing changed` : `enrolled ${name} (relay port ${result.port})`);
      process.stdout.write(`${result.sshCommand}\n`);
    }
  });

  common(p.command("list").alias("status").description("the relay's devices and clients: online, last seen")).action(
    async (o: Record<string, string | boolean | undefined>) => {
      const entries = await listRelay({ relayFile: o.relay as string | undefined, identity: o.identity as string | undefined, sshDir: o.sshDir as string | undefined });
      process.stdout.write(o.json ? `${JSON.stringify(entries, null, 2)}\n` : renderList(entries));
    },
  );
  return p;
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT.usage; // commander printed it
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
