// A relay started exactly as the cloud starts it (relayRunArgs), and a client container with
// the real OpenSSH 10 client that plays the devices and the laptops. Keys are made inside the
// client, so nothing here depends on the host's ssh.
import { chmod, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { buildImage, docker, exec, type RunResult, type Scope, startRelayContainer, waitFor } from "../bed/index.ts";
import { RELAY_CONTAINER_PORT } from "../../infra/relayContainer.ts";

export interface Relay {
  container: string;
  volume: string;
  network: string;
  /** The client container: runs every ssh of the test. */
  client: string;
  /** Pinned public host key line (`ssh-ed25519 AAAA...`). */
  hostKey: string;
  /** ssh from the client container as `user` with key `/k/<key>`; never throws. */
  ssh(key: string, user: string, opts: readonly string[], command?: readonly string[], input?: string | Buffer): Promise<RunResult>;
  /** `ssh admin@relay <words>` with the admin key; never throws. */
  admin(words: readonly string[], input?: string | Buffer): Promise<RunResult>;
  /** Admin command that must succeed; returns its parsed JSON. */
  adminJson<T = unknown>(words: readonly string[], input?: string | Buffer): Promise<T>;
  /** Public key line of `/k/<name>` (made on first use). */
  key(name: string): Promise<string>;
  /** Registry file bytes, read as root inside the relay. */
  registry(): Promise<string>;
  /** Whether 127.0.0.1:port listens inside the relay (a device's tunnel is up). */
  listening(port: number): Promise<boolean>;
  /** Starts `ssh -N -R 127.0.0.1:port:127.0.0.1:22` in the client; resolves when the port listens. */
  tunnel(key: string, port: number): Promise<void>;
  /** Starts a new relay container on the same volume (the old one must be gone). */
  restart(): Promise<void>;
  /** Runs one more relay container (its own name and volume, same keys), detached, without waiting for it. */
  runVariant(opts: { portRange?: string }): Promise<string>;
  /** `ssh -N -L 127.0.0.1:localPort:127.0.0.1:port jump@relay` held in the client; resolves when it listens. */
  holdForward(key: string, localPort: number, port: number): Promise<void>;
  /** What the client reads through 127.0.0.1:localPort (the first bytes; "" when nothing). */
  readThrough(localPort: number): Promise<string>;
  /** Whether the held `-L localPort` ssh process is still running in the client. */
  holding(localPort: number): Promise<boolean>;
}

const SSH_OPTS = [
  "-F", "none", "-o", "UserKnownHostsFile=/k/known_hosts", "-o", "StrictHostKeyChecking=yes",
  "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=INFO", "-o", "ConnectTimeout=60",
  "-p", String(RELAY_CONTAINER_PORT),
];

/** `ssh OPTIONS... USER@RELAY COMMAND...` as run in the client container. */
export function sshArgv(relayHost: string, key: string, user: string, opts: readonly string[], command: readonly string[] = []): string[] {
  return ["ssh", ...SSH_OPTS, "-i", `/k/${key}`, ...opts, `${user}@${relayHost}`, ...command];
}

/** Relay + client on a fresh network; the host key is mounted read-only as in the cloud. */
export async function startRelay(scope: Scope, { clientFlags = [] as string[], mountHostKey = true } = {}): Promise<Relay> {
  const [image, clientImage] = await Promise.all([buildImage("rtunneld"), buildImage("relay-client")]);
  const network = await scope.network("relaynet");
  const volume = await scope.volume("relaystate");
  const client = await scope.run([
    "--name", scope.name("client"), "--network", network, "--cap-add", "NET_ADMIN", ...clientFlags, clientImage,
  ]);
  // Host key and admin key are made in the client; the relay gets them through files the
  // host mounts, exactly like the cloud's /etc/rtunneld.
  await exec(client, ["sh", "-c", "ssh-keygen -q -t ed25519 -N '' -C admin -f /k/admin && ssh-keygen -q -t ed25519 -N '' -C relay -f /k/host"]);
  const dir = await mkdtemp(path.join(tmpdir(), "rtunnel-relay-"));
  const hostKeyFile = path.join(dir, "ssh_host_ed25519_key");
  const adminKeysFile = path.join(dir, "admin_keys");
  await writeFile(hostKeyFile, (await exec(client, ["cat", "/k/host"])).stdout, { mode: 0o600 });
  await chmod(hostKeyFile, 0o600);
  await writeFile(adminKeysFile, (await exec(client, ["cat", "/k/admin.pub"])).stdout);
  let hostKey = (await exec(client, ["cat", "/k/host.pub"])).stdout.split(" ").slice(0, 2).join(" ");
  const container = scope.name("relay");

  const startContainer = async () => {
    await startRelayContainer({
      image, name: container, hostKeyFile: mountHostKey ? hostKeyFile : undefined, adminKeysFile, stateVolume: volume, flags: scope.flags, network,
    });
  };
  await startContainer();
  if (!mountHostKey) hostKey = (await exec(container, ["cat", "/run/rtunneld/ssh_host_ed25519_key.pub"])).stdout.split(" ").slice(0, 2).join(" ");
  await exec(client, ["sh", "-c", `echo "[${container}]:${RELAY_CONTAINER_PORT} ${hostKey}" > /k/known_hosts`]);

  const keys = new Map<string, Promise<string>>();
  const relay: Relay = {
    container, volume, network, client, hostKey,
    ssh: (key, user, opts, command = [], input = undefined) =>
      exec(client, sshArgv(container, key, user, opts, command), { check: false, input, timeoutMs: 180_000 }),
    admin: (words, input) => exec(client, sshArgv(container, "admin", "admin", ["-T"], words), { check: false, input, timeoutMs: 180_000 }),
    async adminJson<T>(words: readonly string[], input?: string | Buffer) {
      const r = await relay.admin(words, input);
      if (r.code !== 0) throw new Error(`admin ${words.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
      return JSON.parse(r.stdout) as T;
    },
    key(name) {
      let k = keys.get(name);
      if (!k) {
        k = exec(client, ["sh", "-c", `test -f /k/${name} || ssh-keygen -q -t ed25519 -N '' -C ${name} -f /k/${name}; cat /k/${name}.pub`])
          .then((r) => r.stdout.trim());
        keys.set(name, k);
      }
      return k;
    },
    registry: async () => (await exec(container, ["cat", "/var/lib/rtunneld/registry/registry.json"], { check: false })).stdout,
    async listening(port) {
      const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
      const tcp = (await exec(container, ["cat", "/proc/net/tcp"])).stdout;
      return tcp.split("\n").some((l) => l.includes(` ${hex} `) && / 0A /.test(l));
    },
    async tunnel(key, port) {
      await docker(["exec", "-d", client, ...sshArgv(container, key, "tunnel", [
        "-N", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5", "-R", `127.0.0.1:${port}:127.0.0.1:22`,
      ])]);
      await waitFor(`the tunnel of ${key} on port ${port}`, () => relay.listening(port), { tries: 480, intervalMs: 250 });
    },
    async restart() {
      await startContainer();
    },
    async runVariant({ portRange }) {
      const name = scope.name("relayvariant");
      await startRelayContainer({
        image, name, hostKeyFile, adminKeysFile, stateVolume: await scope.volume("variantstate"), portRange, flags: scope.flags, network, wait: false,
      });
      return name;
    },
    async holdForward(key, localPort, port) {
      await docker(["exec", "-d", client, ...sshArgv(container, key, "jump", [
        "-N", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5", "-L", `127.0.0.1:${localPort}:127.0.0.1:${port}`,
      ])]);
      await waitFor(`the forward ${localPort} of ${key}`, async () => (await exec(client, ["nc", "-z", "127.0.0.1", String(localPort)], { check: false })).code === 0, { tries: 480, intervalMs: 250 });
    },
    async readThrough(localPort) {
      return (await exec(client, ["sh", "-c", `nc -w 30 127.0.0.1 ${localPort} </dev/null | head -c 7`], { check: false, timeoutMs: 120_000 })).stdout;
    },
    async holding(localPort) {
      return (await exec(client, ["pgrep", "-f", "--", `-L 127.0.0.1:${localPort}:`], { check: false })).stdout.trim() !== "";
    },
  };
  return relay;
}
