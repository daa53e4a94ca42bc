// The relay host's user-data: a bash script that cloud-init runs once on first boot.
// Pure: no Pulumi, no I/O. Every value is checked against a pattern before it is pasted
// into shell text, and nothing secret goes in: the host key is fetched from SSM Parameter
// Store at each service start, so it never appears in user-data (which any principal with
// ec2:DescribeInstanceAttribute can read) or in the console output.

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

/** Runs before every start: host key from SSM, image from ECR (only when missing). */
export function renderPrepareScript(input: Pick<CloudInitInput, "region" | "hostKeyParameter" | "image">): string {
  const registry = input.image.split("/")[0]!;
  return `#!/bin/bash
# Before each start of rtunneld.service: fetch the host key from SSM Parameter Store into a
# root-only file, and pull the relay image by digest if it is not here yet.
set -Eeuo pipefail
trap 'echo "rtunneld-prepare: FATAL: line \${LINENO}: \${BASH_COMMAND}" >&2' ERR
log() { echo "rtunneld-prepare: $*" >&2; }

readonly REGION=${quote(input.region)}
readonly HOST_KEY_PARAMETER=${quote(input.hostKeyParameter)}
readonly HOST_KEY_FILE=${quote(HOST_KEY_FILE)}
readonly IMAGE=${quote(input.image)}
readonly REGISTRY=${quote(registry)}

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
`;
}

export function renderUnit(): string {
  return `[Unit]
Description=rtunneld SSH relay (rtunnel)
Wants=network-online.target
After=network-online.target docker.service
Requires=docker.service
RequiresMountsFor=${STATE_DIR}
# Never give up: a relay that is down for a minute must come back by itself.
StartLimitIntervalSec=0

[Service]
ExecStartPre=-/usr/bin/docker rm -f ${CONTAINER_NAME}
ExecStartPre=${PREPARE_SCRIPT}
ExecStart=${RUN_SCRIPT}
ExecStop=/usr/bin/docker stop -t 10 ${CONTAINER_NAME}
Restart=always
RestartSec=5

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
  // Nitro instances expose EBS volumes as NVMe devices whose serial is the volume id.
  const device = `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${input.dataVolumeId.replace("-", "")}`;
  const runArgs = relayRunArgs(cloudRelayRunOptions(input));
  return `#!/bin/bash
# rtunnel relay bootstrap, rendered by infra/cloudInit.ts. Holds no secret: the host key
# is read from SSM Parameter Store by ${PREPARE_SCRIPT} at each service start.
set -Eeuo pipefail
trap 'echo "rtunnel-bootstrap: FATAL: line \${LINENO}: \${BASH_COMMAND}" >&2' ERR
log() { echo "rtunnel-bootstrap: $*" >&2; }

readonly DATA_DEVICE=${quote(device)}
readonly DATA_MOUNT=${quote(STATE_DIR)}

log "installing docker"
dnf install -y docker
systemctl enable --now docker.service

# State volume: a separate EBS volume, so the registry outlives instance replacement. On a
# replacement it is attached after boot, hence the wait. Format it only when it is blank.
for _ in $(seq 1 120); do
  [ -e "$DATA_DEVICE" ] && break
  sleep 5
done
[ -e "$DATA_DEVICE" ] || { log "FATAL: data volume $DATA_DEVICE never appeared"; exit 3; }
probe=0
blkid -p "$DATA_DEVICE" >/dev/null 2>&1 || probe=$?
if [ "$probe" -eq 2 ]; then
  log "formatting blank data volume"
  mkfs.xfs -L rtunneld "$DATA_DEVICE"
elif [ "$probe" -ne 0 ]; then
  log "FATAL: cannot probe $DATA_DEVICE (blkid exit $probe); not formatting it"
  exit 4
fi
uuid="$(blkid -s UUID -o value "$DATA_DEVICE")"
grep -q "UUID=$uuid " /etc/fstab || echo "UUID=$uuid $DATA_MOUNT xfs defaults,nofail 0 2" >>/etc/fstab
mkdir -p "$DATA_MOUNT"
systemctl daemon-reload
mountpoint -q "$DATA_MOUNT" || mount "$DATA_MOUNT"

install -d -m 0755 ${quote(CONF_DIR)}
${heredoc(ADMIN_KEYS_FILE, "0644", input.adminPublicKeys.join("\n"))}${heredoc(PREPARE_SCRIPT, "0700", renderPrepareScript(input))}${heredoc(RUN_SCRIPT, "0700", renderRunScript(runArgs))}${heredoc(UNIT_FILE, "0644", renderUnit())}
systemctl daemon-reload
systemctl enable --now rtunneld.service
log "rtunneld.service started on port ${input.remotePort}"
`;
}
