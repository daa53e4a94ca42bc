// Everything the kit runs on a device, as scripts built with the `sh` tag (so no value can
// go in unquoted) and tested as text (test/device.test.ts). Pure: provision/device/device.ts
// runs them over the pinned SSH connection, as the login user or as root.
import { AGENT_CONF_DIR, AGENT_CONTAINER, agentPath, agentRunArgs } from "../../lib/contract/agent.ts";
import { keyLine, type PublicKey } from "../../lib/keys.ts";
import { Script, sh } from "../../lib/shell.ts";

const KEY = agentPath("key");
const NEW_KEY = `${KEY}.new`;
const PREVIOUS_KEY = agentPath("previousKey");

/** Who we are on the device, and its machine (three lines). */
export const whoami = (): Script => sh`id -un; id -u; uname -m`;

export const hasCommand = (command: string): Script => sh`command -v ${command}`;

/** Succeeds only when sudo would not ask for a password. */
export const sudoWithoutPassword = (): Script => sh`sudo -n true`;

/** `script` as root through sudo (which must not ask). */
export const asRoot = (script: Script): Script => sh`sudo -n sh -c ${script.text}`;

/** `script` through `sh -c`, for the login shell of any user. */
export const inSh = (script: Script): Script => sh`sh -c ${script.text}`;

/** The Docker daemon's version and the architecture it is built for (two words). */
export const dockerServer = (): Script => sh`docker version --format ${"{{.Server.Version}} {{.Server.Arch}}"}`;

/** A file's content, or nothing when it does not exist. */
export const readFileOrEmpty = (file: string): Script => sh`cat ${file} 2>/dev/null || true`;

export const osRelease = (): Script => readFileOrEmpty("/etc/os-release");

/** Makes the device key (once, on the device: the private half never leaves it) and prints the public half. */
export function ensureDeviceKey(device: string): Script {
  return Script.lines(
    sh`set -e`,
    sh`umask 077`,
    sh`mkdir -p ${AGENT_CONF_DIR}`,
    sh`chmod 700 ${AGENT_CONF_DIR}`,
    sh`[ -f ${KEY} ] || ssh-keygen -q -t ed25519 -N '' -C ${`rtunnel-${device}`} -f ${KEY}`,
    sh`ssh-keygen -y -f ${KEY}`,
  );
}

/** Replaces `file` with stdin, atomically (a temp file beside it, then one rename), mode 0600. */
export function writeFileFromStdin(file: string): Script {
  return sh`umask 077; cat > ${`${file}.tmp`} && mv ${`${file}.tmp`} ${file}`;
}

/** The id of a local image, or a non-zero exit when there is none. */
export const imageId = (image: string): Script => sh`docker image inspect --format ${"{{.Id}}"} ${image}`;

/** `docker load` of the stream on stdin: a `docker save` tarball, plain or gzip. */
export const loadImage = (): Script => sh`docker load`;

/** A label of a local image (empty when it has none), or a non-zero exit when there is no such image. */
export const imageLabel = (image: string, label: string): Script => sh`docker image inspect --format ${`{{index .Config.Labels ${JSON.stringify(label)}}}`} ${image}`;

/**
 * `docker build` of the context tar on stdin, for `platform`, tagged `image`, with `labels`.
 * `--network host`: the build's RUN steps need the network, and a Docker without a bridge
 * network (`"bridge": "none"`, as the test bed's emulated device has) has no other.
 */
export function buildImageFromStdin(o: { image: string; platform: string; labels: Record<string, string> }): Script {
  const labels = Object.entries(o.labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]);
  return sh`docker build --quiet --network host --platform ${o.platform} ${labels} --tag ${o.image} -`;
}

/** The agent container's image id and whether it runs. */
export const agentContainer = (): Script => sh`docker inspect --format ${"{{.Image}} {{.State.Running}}"} ${AGENT_CONTAINER}`;

/** The agent container's state, exit code and restart count (four words). */
export const agentStatus = (): Script => sh`docker inspect --format ${"{{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.RestartCount}}"} ${AGENT_CONTAINER}`;

export const agentLogs = (lines: number): Script => sh`docker logs --tail ${lines} ${AGENT_CONTAINER} 2>&1`;

/** (Re)creates the agent container from `image`. */
export function startAgent(image: string): Script {
  return sh`docker rm -f ${AGENT_CONTAINER} >/dev/null 2>&1 || true; docker ${agentRunArgs(image)}`;
}

export const stopAgent = (): Script => sh`docker rm -f ${AGENT_CONTAINER} >/dev/null 2>&1 || true`;

/** The login user's authorized_keys, or nothing. */
export const readAuthorizedKeys = (): Script => sh`cat "$HOME/.ssh/authorized_keys" 2>/dev/null || true`;

/** Adds a key to the login user's authorized_keys unless it is there; prints `added` or `present`. */
export function authorizeKey(key: PublicKey, comment: string): Script {
  return Script.lines(
    sh`set -e`,
    sh`umask 077`,
    sh`mkdir -p "$HOME/.ssh"`,
    sh`if grep -qF -- ${` ${key.base64}`} "$HOME/.ssh/authorized_keys" 2>/dev/null; then echo present; exit 0; fi`,
    sh`printf '%s\n' ${keyLine(key, comment)} >> "$HOME/.ssh/authorized_keys"`,
    sh`echo added`,
  );
}

/**
 * Takes one key out of the login user's authorized_keys. A failed grep (exit 2: a full SD
 * card, an I/O error) stops it with the file untouched; the new text goes to a temp file
 * beside it with the same mode and owner (`cp -p`), then replaces it with one rename, so the
 * file is never empty or half-written. A symlinked file is written through to its target.
 */
export function deauthorizeKey(key: PublicKey): Script {
  return Script.lines(
    sh`set -e`,
    sh`f="$HOME/.ssh/authorized_keys"`,
    sh`[ -f "$f" ] || exit 0`,
    sh`f=$(readlink -f "$f")`,
    sh`tmp="$f.rtunnel-tmp.$$"`,
    sh`trap 'rm -f "$tmp"' EXIT`,
    sh`cp -p "$f" "$tmp"`,
    sh`rc=0`,
    sh`grep -vF -- ${` ${key.base64}`} "$f" > "$tmp" || rc=$?`,
    // grep: 0 lines kept, 1 nothing kept (the key was the only line), >1 an error.
    sh`if [ "$rc" -gt 1 ]; then echo "grep failed (exit $rc): $f left as it was" >&2; exit 1; fi`,
    sh`mv -f "$tmp" "$f"`,
  );
}

/** revoke-device: the key goes now; the agent 2 s later, detached, because it carries this very session. */
export function cleanupDevice(): Script {
  const later = sh`sleep 2; docker rm -f ${AGENT_CONTAINER}`;
  return Script.lines(
    sh`rm -f ${[KEY, `${KEY}.pub`, NEW_KEY, `${NEW_KEY}.pub`, PREVIOUS_KEY, `${PREVIOUS_KEY}.pub`]}`,
    sh`docker update --restart=no ${AGENT_CONTAINER} >/dev/null 2>&1 || true`,
    sh`setsid sh -c ${later.text} >/dev/null 2>&1 </dev/null &`,
    sh`echo cleaned`,
  );
}

// --- rotate-key: the agent reads its keys before every connection and offers the previous
// key after the new one, so the switch needs no restart and no watching of the agent's log.

/** Step 1: a new key beside the current one; prints its public half. */
export function makeNewKey(device: string): Script {
  return Script.lines(
    sh`set -e`,
    sh`umask 077`,
    sh`rm -f ${[NEW_KEY, `${NEW_KEY}.pub`]}`,
    sh`ssh-keygen -q -t ed25519 -N '' -C ${`rtunnel-${device}`} -f ${NEW_KEY}`,
    sh`cat ${`${NEW_KEY}.pub`}`,
  );
}

/** Step 2: the new key in place, the current one kept as the previous key (renames only). */
export function swapInNewKey(): Script {
  return Script.lines(
    sh`set -e`,
    sh`mv -f ${KEY} ${PREVIOUS_KEY}`,
    sh`mv -f ${`${KEY}.pub`} ${`${PREVIOUS_KEY}.pub`}`,
    sh`mv -f ${NEW_KEY} ${KEY}`,
    sh`mv -f ${`${NEW_KEY}.pub`} ${`${KEY}.pub`}`,
  );
}

/** When the relay refused the new key: the previous key back in place, the new one gone. */
export function restorePreviousKey(): Script {
  return Script.lines(
    sh`if [ -f ${PREVIOUS_KEY} ]; then mv -f ${PREVIOUS_KEY} ${KEY} && mv -f ${`${PREVIOUS_KEY}.pub`} ${`${KEY}.pub`}; fi`,
    sh`rm -f ${[NEW_KEY, `${NEW_KEY}.pub`]}`,
  );
}

/** Last step, once the relay saw the new key: the previous key is deleted. */
export const dropPreviousKey = (): Script => sh`rm -f ${[PREVIOUS_KEY, `${PREVIOUS_KEY}.pub`]}`;

/** --install-docker: the distribution's own package and service, from /etc/os-release's ID and ID_LIKE. */
export function installDocker(distroIds: readonly string[]): Script | undefined {
  const has = (...ids: string[]) => distroIds.some((i) => ids.includes(i));
  const enable = sh`if command -v systemctl >/dev/null; then systemctl enable --now docker; fi`;
  if (has("debian", "ubuntu", "raspbian")) {
    return Script.lines(sh`apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io`, enable);
  }
  if (has("fedora", "rhel", "centos")) return Script.lines(sh`dnf install -y moby-engine`, enable);
  if (has("alpine")) return sh`apk add docker && rc-update add docker default && service docker start`;
  if (has("arch")) return Script.lines(sh`pacman -S --noconfirm docker`, enable);
  return undefined;
}

/** The distribution ids of an /etc/os-release text (ID and ID_LIKE). */
export function distroIds(osRelease: string): string[] {
  return [...osRelease.matchAll(/^ID(?:_LIKE)?="?([^"\n]*)"?$/gm)].flatMap((m) => m[1]!.split(/\s+/)).filter(Boolean);
}
