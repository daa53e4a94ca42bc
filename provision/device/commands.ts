// Everything the kit runs on a device, as scripts built with the `sh` tag (so no value can
// go in unquoted) and tested as text (test/device.test.ts). Pure: provision/device/device.ts
// runs them over the pinned SSH connection, as the login user or as root.
import { AGENT_CONF_DIR, AGENT_CONTAINER, agentPath, agentRunArgs } from "../../lib/contract/agent.ts";
import { keyLine, type PublicKey } from "../../lib/keys.ts";
import { Script, sh } from "../../lib/shell.ts";
import type { ConfigWrite, EffectCheck, FileVerification } from "./sshd.ts";

const KEY = agentPath("key");
const NEW_KEY = `${KEY}.new`;
const PREVIOUS_KEY = agentPath("previousKey");

/** Who we are on the device, and its machine (three lines). */
export const whoami = (): Script => sh`id -un; id -u; uname -m`;

export const hasCommand = (command: string): Script => sh`command -v ${command}`;

/** The device's clock: seconds since the epoch (issue 15: certificates are checked against it). */
export const epochSeconds = (): Script => sh`date +%s`;

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

// --- the device's sshd (provision/device/sshd.ts renders what these write) ------------------

/** The device's sshd, wherever its distribution keeps it (a login shell's PATH may lack /usr/sbin). */
const findSshd = sh`sshd=$(command -v sshd || echo /usr/sbin/sshd)`;

/** Succeeds when the device has an OpenSSH sshd. */
export const hasSshd = (): Script => Script.lines(findSshd, sh`[ -x "$sshd" ]`);

/** Its version line (`sshd -V`; `ssh -V` where sshd has no -V), or nothing. */
export const sshdVersion = (): Script => Script.lines(findSshd, sh`{ "$sshd" -V 2>&1; ssh -V 2>&1; } | grep -m 1 '^OpenSSH' || true`);

/** `sshd -t`: the configuration as sshd would load it now (its complaint on stderr). */
export const sshdTest = (): Script => Script.lines(findSshd, sh`"$sshd" -t`);

/** `sshd -T` (as root): every effective setting, or those of one connection (`-C user=...,addr=...`). */
export const sshdEffective = (spec?: string): Script => Script.lines(findSshd, spec === undefined ? sh`"$sshd" -T` : sh`"$sshd" -T -C ${spec}`);

/** `present SHA256` and the file's bytes in base64, or `absent` (the SSH channel trims text; base64 keeps every byte). */
export const readFileBase64 = (file: string): Script =>
  sh`if [ -e ${file} ]; then echo "present $(sha256sum < ${file} | cut -d ' ' -f 1)"; base64 < ${file} | tr -d '\\n'; else echo absent; fi`;

const AS_WAS = "the device's sshd configuration is as it was";

/**
 * The shell functions of changeSshdConfig, each taking its file as an argument (a symlinked
 * file is written through to its target). Slot N of the work directory keeps file N's old
 * content (when it had one) and the directory the change had to make for it.
 */
const configFunctions = Script.lines(
  sh`fail() { printf '%s\\n' "$*" >&2; exit 1; }`,
  sh`target() { readlink -f "$1" 2>/dev/null || printf '%s\\n' "$1"; }`,
  // as the plan read it: $1 file, $2 its sha256 (empty: it was absent)
  sh`unchanged() { if [ -z "$2" ]; then [ ! -e "$1" ]; else [ -f "$1" ] && [ "$(sha256sum < "$1" | cut -d ' ' -f 1)" = "$2" ]; fi; }`,
  sh`keep() { if [ -e "$2" ]; then cp -p "$2" "$work/$1"; fi; }`,
  sh`put_back() { f=$(target "$2"); if [ -e "$work/$1" ]; then cp -p "$work/$1" "$f.rtunnel-tmp" && mv -f "$f.rtunnel-tmp" "$f"; else rm -f "$f"; fi; if [ -s "$work/$1.dir" ]; then rmdir "$(cat "$work/$1.dir")" 2>/dev/null; fi; }`,
  // $1 slot, $2 file, $3 mode of a new file, $4 mode of a new directory, $5 content, $6 `base64` when $5 is its bytes in base64
  sh`content() { if [ "$2" = base64 ]; then printf '%s' "$1" | base64 -d; else printf '%s' "$1"; fi; }`,
  sh`put() { f=$(target "$2"); d=$(dirname "$f"); if [ ! -d "$d" ]; then mkdir -p -m "$4" "$d" && printf '%s' "$d" > "$work/$1.dir" || return 1; fi; if [ -e "$f" ]; then cp -p "$f" "$f.rtunnel-tmp"; else : > "$f.rtunnel-tmp" && chmod "$3" "$f.rtunnel-tmp"; fi && content "$5" "\${6:-}" > "$f.rtunnel-tmp" && mv -f "$f.rtunnel-tmp" "$f" || { rm -f "$f.rtunnel-tmp"; return 1; }; }`,
  sh`drop() { rm -f "$(target "$1")"; }`,
  sh`backup() { if [ -e "$work/$1" ]; then mkdir -p -m 700 "$(dirname "$2")" && cp -p "$work/$1" "$2"; fi; }`,
);

/**
 * Changes the device's sshd configuration as one transaction: each file must still be what the
 * plan read (sha256); the old ones are kept aside; the new ones go in atomically (a temp file
 * beside each, then one rename; an existing file keeps its mode and owner; a binary one is
 * carried in base64); then `sshd -t`, the checks of the files written (`verify`: a KRL
 * ssh-keygen can read, a host certificate sshd -t does not complain of) and the effect checks
 * (`sshd -T`: a value read before the drop-in would win). Any failure puts every file back and
 * prints one line on stderr: the device is left as it was. Only then the backups are written
 * and sshd reloaded: `systemctl reload` of the running ssh or sshd unit, else SIGHUP to the
 * listener in sshd's PidFile (never by name: on OpenSSH 9 every session process is called sshd
 * too). sshd re-executes itself on a reload and keeps every session, this one included; the
 * script goes on once the listener has new listening sockets (so the next connection gets the
 * new settings). Then the removals marked `afterReload` (files the old configuration named), a
 * failure there a warning line. Last line: `sshd-reload: HOW`.
 */
export function changeSshdConfig(writes: readonly ConfigWrite[], checks: readonly EffectCheck[], verify: readonly FileVerification[] = []): Script {
  const lines: Script[] = [sh`set -u`, sh`umask 022`, sh`export LC_ALL=C`, findSshd, sh`work=$(mktemp -d) || exit 1`, sh`trap 'rm -rf "$work"' EXIT`, configFunctions];
  const now = writes.map((w, i) => ({ w, i })).filter(({ w }) => !w.afterReload);
  const later = writes.filter((w) => w.afterReload);
  writes.forEach((w, i) => {
    const changed = w.expectSha256 === undefined ? `${w.path} appeared since enrollment read the device` : `${w.path} changed since it was read`;
    lines.push(sh`unchanged ${w.path} ${w.expectSha256 ?? ""} || fail ${`${changed}: nothing was changed; run it again`}`);
    if (!w.afterReload) lines.push(sh`keep ${i} "$(target ${w.path})" || fail ${`could not keep a copy of ${w.path}: nothing was changed`}`);
  });
  lines.push(Script.lines(sh`restore() {`, ...now.map(({ w, i }) => sh`  put_back ${i} ${w.path}`).reverse(), sh`  :`, sh`}`));
  for (const { w, i } of now) {
    lines.push(
      w.text === undefined
        ? sh`drop ${w.path} || { restore; fail ${`could not remove ${w.path}; ${AS_WAS}`}; }`
        : w.encoding === "base64"
          ? sh`put ${i} ${w.path} ${w.mode} ${w.dirMode} ${w.text} base64 || { restore; fail ${`could not write ${w.path}; ${AS_WAS}`}; }`
          : sh`put ${i} ${w.path} ${w.mode} ${w.dirMode} ${w.text} || { restore; fail ${`could not write ${w.path}; ${AS_WAS}`}; }`,
    );
  }
  lines.push(sh`if ! out=$("$sshd" -t 2>&1); then restore; fail "sshd -t refused the new configuration: $(printf '%s\\n' "$out" | tr -d '\\r' | grep -v -e '^$' -e 'terminating, [0-9]* bad configuration option' | tail -n 1);" ${AS_WAS}; fi`);
  for (const v of verify) {
    if (v.kind === "krl") {
      // ssh-keygen -Q: 0 nothing revoked, 1 the probe revoked, anything else a KRL it can't read.
      lines.push(sh`ssh-keygen -Q -f ${v.path} ${v.probe} >"$work/krl" 2>&1; rc=$?; [ "$rc" -le 1 ] || { why=$(tr -d '\\r' < "$work/krl" | tail -n 1); restore; fail ${`${v.path} is not a revocation list ssh-keygen can read (`}"$why"${`): sshd would refuse every key; ${AS_WAS}`}; }`);
    } else {
      lines.push(sh`if printf '%s\\n' "$out" | grep -qF -- ${v.path}; then why=$(printf '%s\\n' "$out" | tr -d '\\r' | grep -F -m 1 -- ${v.path}); restore; fail "sshd -t: $why;" ${AS_WAS}; fi`);
    }
  }
  for (const spec of [...new Set(checks.map((c) => c.spec))]) {
    const who = spec === undefined ? "every connection" : `a connection with ${spec}`;
    lines.push(spec === undefined ? sh`eff=$("$sshd" -T 2>&1)` : sh`eff=$("$sshd" -T -C ${spec} 2>&1)`);
    lines.push(sh`[ $? -eq 0 ] || { restore; fail "sshd -T failed: $(printf '%s\\n' "$eff" | tr -d '\\r' | tail -n 1);" ${AS_WAS}; }`);
    for (const c of checks.filter((x) => x.spec === spec)) {
      const keyword = c.line.split(" ")[0]!;
      lines.push(
        sh`printf '%s\\n' "$eff" | grep -qixF -- ${c.line} || { now=$(printf '%s\\n' "$eff" | grep -i -m 1 ${`^${keyword} `} || echo ${`no ${keyword}`}); restore; fail ${`sshd would not use rtunnel's \`${c.line}\` for ${who} (it uses \``}"$now"${`\`): a value read before the drop-in wins (a file sorted before it in /etc/ssh/sshd_config.d, or a Match block before it); ${AS_WAS}`}; }`,
      );
    }
  }
  writes.forEach((w, i) => {
    if (w.backup && !w.afterReload) lines.push(sh`backup ${i} ${w.backup} || { restore; fail ${`could not back ${w.path} up to ${w.backup}; ${AS_WAS}`}; }`);
  });
  const afterReload = Script.lines(
    sh`:`,
    ...later.map((w) => sh`drop ${w.path} || echo ${`warning: ${w.path} could not be removed (sshd no longer names it): remove it by hand`} >&2`),
    ...[...new Set(later.flatMap((w) => (w.dropDir ? [w.dropDir] : [])))].map((d) => sh`rmdir ${d} 2>/dev/null || true`),
  );
  lines.push(reloadSshd(afterReload));
  return Script.lines(...lines);
}

/** The listener's reload (see changeSshdConfig), then `after`; `fail` and `restore` are the caller's. */
function reloadSshd(after: Script): Script {
  return Script.lines(
    // The listening TCP sockets of process $1, by inode: its fds that /proc/net/tcp* lists in state LISTEN (0A).
    sh`listening() {`,
    sh`  ls -l "/proc/$1/fd" 2>/dev/null | sed -n 's/.*socket:\\[\\([0-9]*\\)\\]$/\\1/p' | sort > "$work/fds"`,
    sh`  awk 'FNR > 1 && $4 == "0A" { print $10 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort > "$work/listen"`,
    sh`  comm -12 "$work/fds" "$work/listen" | tr '\\n' ' '`,
    sh`}`,
    sh`pid=; how=`,
    sh`if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then`,
    sh`  for unit in ssh.service sshd.service; do`,
    sh`    if systemctl is-active --quiet "$unit"; then how="systemctl reload $unit"; pid=$(systemctl show -p MainPID --value "$unit"); break; fi`,
    sh`  done`,
    sh`fi`,
    sh`if [ -z "$how" ]; then`,
    sh`  pidfile=$("$sshd" -T 2>/dev/null | awk '$1 == "pidfile" { print $2; exit }')`,
    sh`  if [ -n "$pidfile" ] && [ -r "$pidfile" ]; then pid=$(cat "$pidfile"); fi`,
    sh`  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then how="kill -HUP $pid"; fi`,
    sh`fi`,
    sh`if [ -z "$how" ]; then`,
    after,
    sh`  echo 'sshd-reload: none (no sshd runs: it reads the new configuration when it starts)'`,
    sh`  exit 0`,
    sh`fi`,
    sh`before=$(listening "$pid")`,
    sh`$how || { restore; fail "$how failed; the device's sshd configuration is as it was"; }`,
    // Bounded: a re-exec takes milliseconds; an sshd that is not back in 60 s needs a person.
    sh`replaced() { now=$(listening "$pid"); [ -n "$now" ] || return 1; for x in $before; do case " $now " in *" $x "*) return 1 ;; esac; done; }`,
    sh`tries=0`,
    sh`if [ -n "$before" ]; then until replaced; do tries=$((tries + 1)); [ "$tries" -lt 240 ] || fail "sshd did not listen again within 60 s of $how: see its log on the device (journalctl -u ssh)"; sleep 0.25; done; fi`,
    after,
    sh`echo "sshd-reload: $how"`,
  );
}
