// The relay tests' world: a relay from the fixture library (run exactly as the cloud runs it)
// and a client container with the real OpenSSH 10 client that plays the devices and the
// laptops, all from one address. Keys are made inside the client, so nothing here depends on
// the host's ssh; the relay gets its host key and admin key through files, as in the cloud.
import { chmod, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { RELAY_CONTAINER_PORT, RELAY_REGISTRY_FILE } from "../../lib/contract/relay.ts";
import type { RelaySettings } from "../../lib/contract/relayRun.ts";
import { hostPattern, knownHostsLine } from "../../lib/knownHosts.ts";
import { parsePublicKey } from "../../lib/keys.ts";
import { sh } from "../../lib/shell.ts";
import { buildImage, docker, exec, runMisconfiguredRelay, startRelay as startRelayFixture, type RelayFixture, type RunResult, type Scope, waitFor } from "../bed/index.ts";

export interface Relay {
  fixture: RelayFixture;
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
  /** Starts a new relay container on the same volume (the old one is removed first). */
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
export async function startRelay(scope: Scope, { clientFlags = [] as string[], mountHostKey = true, settings = undefined as RelaySettings | undefined } = {}): Promise<Relay> {
  const clientImage = await buildImage("relay-client");
  const network = await scope.network("relaynet");
  const client = await scope.run(["--name", scope.name("client"), "--network", network, "--cap-add", "NET_ADMIN", ...clientFlags, clientImage]);
  await exec(client, ["sh", "-c", "ssh-keygen -q -t ed25519 -N '' -C admin -f /k/admin && ssh-keygen -q -t ed25519 -N '' -C relay -f /k/host"]);
  const dir = await mkdtemp(path.join(tmpdir(), "rtunnel-relay-"));
  const keys = { hostKeyFile: path.join(dir, "ssh_host_ed25519_key"), adminKeysFile: path.join(dir, "admin_keys"), hostKey: (await exec(client, ["cat", "/k/host.pub"])).stdout.split(" ").slice(0, 2).join(" ") };
  await writeFile(keys.hostKeyFile, (await exec(client, ["cat", "/k/host"])).stdout, { mode: 0o600 });
  await chmod(keys.hostKeyFile, 0o600);
  await writeFile(keys.adminKeysFile, (await exec(client, ["cat", "/k/admin.pub"])).stdout);
  // The fixture's own admin calls (over the published port) are not used here: every ssh of
  // these tests goes from the client container.
  const adminFile = path.join(dir, "admin");
  await writeFile(adminFile, (await exec(client, ["cat", "/k/admin"])).stdout, { mode: 0o600 });
  const f = await startRelayFixture(scope, { network, dir, keys, admin: { file: adminFile, pub: (await exec(client, ["cat", "/k/admin.pub"])).stdout.trim() }, mountHostKey, settings });
  const pin = async () => exec(client, ["sh", "-c", sh`cat > /k/known_hosts`.text], { input: `${knownHostsLine({ pattern: hostPattern(f.container, RELAY_CONTAINER_PORT), key: parsePublicKey(f.hostKey) })}\n` });
  await pin();

  const keyCache = new Map<string, Promise<string>>();
  const relay: Relay = {
    fixture: f,
    get container() {
      return f.container;
    },
    volume: f.stateVolume,
    network,
    client,
    hostKey: f.hostKey,
    ssh: (key, user, opts, command = [], input = undefined) =>
      exec(client, sshArgv(f.container, key, user, opts, command), { check: false, input, timeoutMs: 180_000 }),
    admin: (words, input) => exec(client, sshArgv(f.container, "admin", "admin", ["-T"], words), { check: false, input, timeoutMs: 180_000 }),
    async adminJson<T>(words: readonly string[], input?: string | Buffer) {
      const r = await relay.admin(words, input);
      if (r.code !== 0) throw new Error(`admin ${words.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
      return JSON.parse(r.stdout) as T;
    },
    key(name) {
      let k = keyCache.get(name);
      if (!k) {
        const file = `/k/${name}`;
        k = exec(client, ["sh", "-c", sh`test -f ${file} || ssh-keygen -q -t ed25519 -N '' -C ${name} -f ${file}; cat ${`${file}.pub`}`.text]).then((r) => r.stdout.trim());
        keyCache.set(name, k);
      }
      return k;
    },
    registry: async () => (await exec(f.container, ["cat", RELAY_REGISTRY_FILE], { check: false })).stdout,
    listening: (port) => f.listening(port),
    async tunnel(key, port) {
      await docker(["exec", "-d", client, ...sshArgv(f.container, key, "tunnel", [
        "-N", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5", "-R", `127.0.0.1:${port}:127.0.0.1:22`,
      ])]);
      await waitFor(`the tunnel of ${key} on port ${port}`, () => relay.listening(port), { tries: 480, intervalMs: 250 });
    },
    async restart() {
      // Same name, same volume: replace() would rename it; a recreated relay keeps its name here.
      await docker(["rm", "-f", f.container]).catch(() => undefined);
      await f.replace();
      await pin();
    },
    runVariant: ({ portRange }) => runMisconfiguredRelay(scope, { network, keys, portRange }),
    async holdForward(key, localPort, port) {
      await docker(["exec", "-d", client, ...sshArgv(f.container, key, "jump", [
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
