// The relay host's user-data: a bash script that cloud-init runs once on first boot.
// Pure: no Pulumi, no I/O. Every value is checked against a pattern before it is pasted
// into shell text, and nothing secret goes in: the host key is fetched from SSM Parameter
// Store at each service start, so it never appears in user-data (which any principal with
// ec2:DescribeInstanceAttribute can read) or in the console output.
//
// cloud-init runs user-data once per instance, so the script only writes files and enables
// rtunneld.service, the first thing it does. Everything that can fail or wait (dnf, SSM, ECR,
// a data volume that on a replacement is attached minutes after boot) is in the unit's start
// (ExecStartPre), which systemd retries every few seconds for ever: an error, a reboot or a
// Ctrl-C never leaves a host that does not start the relay.

import { relayRunArgs, type RelayRunOptions } from "../lib/contract/relayRun.ts";
import { keyLine, parsePublicKey } from "../lib/keys.ts";
import { quote } from "../lib/shell.ts";
import { SAFE_KEY_COMMENT } from "./config.ts";

export const CONTAINER_NAME = "rtunneld";
export const CONF_DIR = "/etc/rtunneld";
export const HOST_KEY_FILE = `${CONF_DIR}/ssh_host_ed25519_key`;
export const ADMIN_KEYS_FILE = `${CONF_DIR}/admin_keys`;
export const STATE_DIR = "/var/lib/rtunneld";
export const PREPARE_SCRIPT = "/usr/local/sbin/rtunneld-prepare";
export const VOLUME_SCRIPT = "/usr/local/sbin/rtunneld-volume";
export const RUN_SCRIPT = "/usr/local/sbin/rtunneld-run";
export const UNIT_FILE = "/etc/systemd/system/rtunneld.service";

export interface CloudInitInput {
  region: string;
  /** Name of the SSM SecureString holding the OpenSSH private host key. */
  hostKeyParameter: string;
  /** `registry/repo@sha256:...`: the instance runs exactly the pushed build. */
  image: string;
  remotePort: number;
  portRange: string;
  adminPublicKeys: readonly string[];
  /** EBS volume id of the state volume (`vol-...`). */
  dataVolumeId: string;
}

const PATTERNS: Record<Exclude<keyof CloudInitInput, "adminPublicKeys" | "remotePort">, RegExp> = {
  region: /^[a-z]{2}(-[a-z]+)+-\d$/,
  hostKeyParameter: /^\/[A-Za-z0-9_./-]{1,1010}$/,
  image: /^[a-z0-9.-]+(:\d+)?\/[a-z0-9._/-]+@sha256:[a-f0-9]{64}$/,
  portRange: /^\d{1,5}-\d{1,5}$/,
  dataVolumeId: /^vol-[a-f0-9]{8,17}$/,
};

function check(input: CloudInitInput): void {
  for (const [name, re] of Object.entries(PATTERNS)) {
    const value = input[name as keyof typeof PATTERNS];
    if (!re.test(value)) throw new TypeError(`cloud-init ${name} ${JSON.stringify(value)} does not match ${re}`);
  }
  if (!Number.isInteger(input.remotePort) || input.remotePort < 1 || input.remotePort > 65535 || input.remotePort === 22) {
    throw new RangeError(`cloud-init remotePort must be 1-65535 and not 22 (got ${input.remotePort})`);
  }
  if (input.adminPublicKeys.length === 0) throw new TypeError("cloud-init needs at least one admin public key");
  for (const key of input.adminPublicKeys) {
    const comment = key.split(" ").slice(2).join(" ");
    let parsed;
    try {
      parsed = parsePublicKey(key, "cloud-init admin key");
    } catch (e) {
      throw new TypeError((e as Error).message, { cause: e });
    }
    if ((comment && !SAFE_KEY_COMMENT.test(comment)) || keyLine(parsed, comment || undefined) !== key) {
      throw new TypeError(`cloud-init admin key is not a plain public key line: ${JSON.stringify(key.slice(0, 40))}`);
    }
  }
}


/** The `docker run` options the cloud uses (tests swap image, paths, port and name). */
export function cloudRelayRunOptions(input: Pick<CloudInitInput, "image" | "remotePort" | "portRange">): RelayRunOptions {
  return {
    image: input.image,
    containerName: CONTAINER_NAME,
    publish: String(input.remotePort),
    hostKeyFile: HOST_KEY_FILE,
    adminKeysFile: ADMIN_KEYS_FILE,
    stateVolume: STATE_DIR,
    portRange: input.portRange,
  };
}

/** The script systemd starts: `exec docker <relayRunArgs>` in the foreground. */
export function renderRunScript(args: readonly string[]): string {
  return [
    "#!/bin/bash",
    "# The rtunneld relay container. Rendered from relayRunArgs() in infra/relayContainer.ts,",
    "# the arguments the image tests run, so what boots here is what was tested.",
    "set -Eeuo pipefail",
    `exec docker ${args.map(quote).join(" ")}`,
    "",
  ].join("\n");
}

/** Seconds between two starts (systemd RestartSec). */
export const RESTART_SEC = 5;

/** Exit code of a step that is not possible yet (the data volume not attached): systemd retries. */
export const EXIT_NOT_YET = 75;

/** Runs before every start: docker installed and running, host key from SSM, image from ECR (only when missing). */
export function renderPrepareScript(input: Pick<CloudInitInput, "region" | "hostKeyParameter" | "image">): string {
  const registry = input.image.split("/")[0]!;
  return `#!/bin/bash
# Before each start of rtunneld.service: docker installed (dnf, on the first start) and running,
# the host key fetched from SSM Parameter Store into a root-only file, the relay image pulled by
# digest if it is not here yet, and a container left from the last run removed. Any failure
# fails this start; systemd starts again ${RESTART_SEC} s later.
set -Eeuo pipefail
trap 'echo "rtunneld-prepare: FATAL: line \${LINENO}: \${BASH_COMMAND}" >&2' ERR
log() { echo "rtunneld-prepare: $*" >&2; }

readonly REGION=${quote(input.region)}
readonly HOST_KEY_PARAMETER=${quote(input.hostKeyParameter)}
readonly HOST_KEY_FILE=${quote(HOST_KEY_FILE)}
readonly IMAGE=${quote(input.image)}
readonly REGISTRY=${quote(registry)}
readonly CONTAINER=${quote(CONTAINER_NAME)}

if ! systemctl cat docker.service >/dev/null 2>&1; then
  log "installing docker"
  dnf install -y docker
fi
if ! systemctl is-active --quiet docker.service; then
  log "starting docker"
  systemctl enable --now docker.service
fi

umask 077
install -d -m 0755 ${quote(CONF_DIR)}
tmp="$(mktemp "\${HOST_KEY_FILE}.XXXXXX")"
if aws ssm get-parameter --region "$REGION" --name "$HOST_KEY_PARAMETER" --with-decryption \\
    --query Parameter.Value --output text >"$tmp" && [ -s "$tmp" ]; then
  chmod 0600 "$tmp"
  mv -f "$tmp" "$HOST_KEY_FILE"
  log "host key fetched from $HOST_KEY_PARAMETER"
else
  rm -f "$tmp"
  # A running relay keeps its last key through an SSM outage rather than not starting.
  [ -s "$HOST_KEY_FILE" ] || { log "FATAL: cannot read $HOST_KEY_PARAMETER and no host key yet"; exit 3; }
  log "WARNING: cannot read $HOST_KEY_PARAMETER, keeping the host key already here"
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "pulling $IMAGE"
  aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "$REGISTRY"
  docker pull "$IMAGE"
  docker logout "$REGISTRY" >/dev/null
fi

docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
`;
}

/** Nitro instances expose an EBS volume as an NVMe device whose serial is the volume id. */
export function dataVolumeDevice(volumeId: string): string {
  return `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${volumeId.replace("-", "")}`;
}

/** Runs before every start: the state volume mounted, formatted first only when it is blank. */
export function renderVolumeScript(input: Pick<CloudInitInput, "dataVolumeId">): string {
  return `#!/bin/bash
# Before each start of rtunneld.service: the state volume (a separate EBS volume, so the
# registry outlives the instance) mounted at ${STATE_DIR}. On a replacement it is attached
# only after the old instance has stopped, minutes after this one booted: until it is here,
# this exits ${EXIT_NOT_YET} and systemd tries again. It is formatted only when blkid finds
# nothing on it.
set -Eeuo pipefail
trap 'echo "rtunneld-volume: FATAL: line \${LINENO}: \${BASH_COMMAND}" >&2' ERR
log() { echo "rtunneld-volume: $*" >&2; }

readonly DATA_DEVICE=${quote(dataVolumeDevice(input.dataVolumeId))}
readonly DATA_MOUNT=${quote(STATE_DIR)}

if mountpoint -q "$DATA_MOUNT"; then
  exit 0
fi
if [ ! -e "$DATA_DEVICE" ]; then
  log "data volume $DATA_DEVICE not attached yet"
  exit ${EXIT_NOT_YET}
fi
probe=0
blkid -p "$DATA_DEVICE" >/dev/null 2>&1 || probe=$?
if [ "$probe" -eq 2 ]; then
  log "formatting blank data volume $DATA_DEVICE"
  mkfs.xfs -q -L rtunneld "$DATA_DEVICE"
elif [ "$probe" -ne 0 ]; then
  log "FATAL: cannot probe $DATA_DEVICE (blkid exit $probe); not formatting it"
  exit 4
fi
mkdir -p "$DATA_MOUNT"
mount -o nodev,nosuid,noexec "$DATA_DEVICE" "$DATA_MOUNT"
log "data volume $DATA_DEVICE mounted at $DATA_MOUNT"
`;
}

/** Long enough for the first start on a t4g.nano: dnf installing docker, then the image pull. */
export const START_TIMEOUT = "20min";

export function renderUnit(): string {
  return `[Unit]
Description=rtunneld SSH relay (rtunnel)
# Wants, not Requires: on the first start docker is not installed yet (the prepare step
# installs it), and a start whose requirement is missing fails without a retry.
Wants=network-online.target docker.service
After=network-online.target docker.service
# Never give up: a relay that is down for a minute must come back by itself.
StartLimitIntervalSec=0

[Service]
# Each start: docker, host key and image (prepare), then the state volume mounted (volume).
# A step that fails fails the start, and Restart= starts again: a failed dnf or a volume
# attached late only delay the relay. (No RequiresMountsFor: a unit whose mount failed is
# not retried by Restart=.)
ExecStartPre=${PREPARE_SCRIPT}
ExecStartPre=${VOLUME_SCRIPT}
ExecStart=${RUN_SCRIPT}
ExecStop=-/usr/bin/docker stop -t 10 ${CONTAINER_NAME}
Restart=always
RestartSec=${RESTART_SEC}
# The first start installs docker and pulls the image, on a t4g.nano far more than the
# default 90 s; a start that takes longer is killed and begins again (pulled layers stay).
TimeoutStartSec=${START_TIMEOUT}

[Install]
WantedBy=multi-user.target
`;
}

const EOF_MARK = "RTUNNEL_EOF";

function heredoc(path: string, mode: string, content: string): string {
  if (content.split("\n").includes(EOF_MARK)) throw new Error(`content for ${path} contains the heredoc marker`);
  const body = content.endsWith("\n") ? content : `${content}\n`;
  return `cat >${quote(path)} <<'${EOF_MARK}'\n${body}${EOF_MARK}\nchmod ${mode} ${quote(path)}\n`;
}

/** The whole user-data script. Throws TypeError/RangeError on any value that fails its pattern. */
export function renderUserData(input: CloudInitInput): string {
  check(input);
  const runArgs = relayRunArgs(cloudRelayRunOptions(input));
  return `#!/bin/bash
# rtunnel relay bootstrap, rendered by infra/cloudInit.ts. Holds no secret: the host key
# is read from SSM Parameter Store by ${PREPARE_SCRIPT} at each service start.
# Writes the relay's files and enables its unit, nothing else: installing docker, the data
# volume, the host key and the image are steps of the unit's start, which systemd retries.
set -Eeuo pipefail
trap 'echo "rtunnel-bootstrap: FATAL: line \${LINENO}: \${BASH_COMMAND}" >&2' ERR
log() { echo "rtunnel-bootstrap: $*" >&2; }

install -d -m 0755 ${quote(CONF_DIR)}
${heredoc(ADMIN_KEYS_FILE, "0644", input.adminPublicKeys.join("\n"))}${heredoc(PREPARE_SCRIPT, "0700", renderPrepareScript(input))}${heredoc(VOLUME_SCRIPT, "0700", renderVolumeScript(input))}${heredoc(RUN_SCRIPT, "0700", renderRunScript(runArgs))}${heredoc(UNIT_FILE, "0644", renderUnit())}
systemctl daemon-reload
systemctl enable rtunneld.service
# Not --now: the start waits for dnf and the data volume, and cloud-init need not.
systemctl start --no-block rtunneld.service
log "rtunneld.service enabled and starting on port ${input.remotePort}: journalctl -u rtunneld"
`;
}
