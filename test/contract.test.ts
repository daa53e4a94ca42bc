// The contracts are written once, in TypeScript (lib/contract/), and again in the images' own
// files (bash, Python, sshd_config, Dockerfiles): these tests hold the images to the
// TypeScript values, so a change to one that forgets the other fails here.
import { readFileSync } from "node:fs";
import path from "node:path";
import test from "ava";
import { RELAY_CA_PATHS } from "../lib/contract/ca.ts";
import { AGENT_BACKOFF, AGENT_CONF_DIR, AGENT_ENV_KEYS, AGENT_EXIT, AGENT_FILES, AGENT_STATES, DEFAULT_TARGET } from "../lib/contract/agent.ts";
import {
  DEFAULT_PORT_RANGE,
  NAME_PATTERN,
  JUMP_UNUSED_TIMEOUT,
  RELAY_ACCOUNTS,
  RELAY_ADMIN_KEYS_PATH,
  RELAY_CONNECTION_LIMITS,
  RELAY_AUDIT_FILE,
  RELAY_CERTIFICATES,
  RELAY_CONTAINER_PORT,
  RELAY_ENV,
  RELAY_EXIT,
  RELAY_HOST_KEY_PATH,
  RELAY_READY_LINE,
  RELAY_REGISTRY_FILE,
  RELAY_RUN_DIR,
  RELAY_STATE_PATH,
} from "../lib/contract/relay.ts";
import { relayRunArgs } from "../lib/contract/relayRun.ts";
import { repoRoot } from "../lib/paths.ts";
import { CONTROL_PERSIST } from "../provision/laptop/model.ts";

const relay = (file: string) => readFileSync(path.join(repoRoot, "images", "rtunneld", file), "utf8");
const agent = (file: string) => readFileSync(path.join(repoRoot, "images", "rtunnel", file), "utf8");
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

test("the relay's sshd port is the contract's container port in sshd_config, the entrypoint and the Dockerfile", (t) => {
  t.deepEqual([...relay("sshd_config").matchAll(/^Port (\d+)$/gm)].map((m) => Number(m[1])), [RELAY_CONTAINER_PORT]);
  t.regex(relay("entrypoint"), new RegExp(`^SSHD_PORT=${RELAY_CONTAINER_PORT} `, "m"));
  t.regex(relay("Dockerfile"), new RegExp(`^EXPOSE ${RELAY_CONTAINER_PORT}$`, "m"));
  t.true(relayRunArgs({ image: "x", containerName: "y", publish: "1", stateVolume: "v" }).includes(`1:${RELAY_CONTAINER_PORT}`));
});

test("the entrypoint prints the contract's ready line, and only after its listening check", (t) => {
  const entry = relay("entrypoint");
  const m = /log "(ready: sshd listening on port \$SSHD_PORT)[^"]*"/.exec(entry);
  t.truthy(m, "no ready line in the entrypoint");
  const prefix = /^log\(\) \{ printf '([^%]*)%s\\n'/m.exec(entry)?.[1];
  t.is(`${prefix}${m![1]!.replace("$SSHD_PORT", String(RELAY_CONTAINER_PORT))}`, RELAY_READY_LINE);
  const ready = entry.indexOf(m![0]);
  t.true(entry.indexOf("/usr/sbin/sshd -D -e") < ready, "the ready line comes before sshd is started");
  t.true(entry.lastIndexOf("listening &&", ready) > entry.indexOf("/usr/sbin/sshd -D -e"), "no listening check between starting sshd and the ready line");
});

test("the relay's paths, env names and port range default are the contract's", (t) => {
  const entry = relay("entrypoint");
  const lib = relay("rtunneld-lib.sh");
  t.regex(entry, new RegExp(`^PORT_RANGE=\\$\\{${RELAY_ENV.portRange}:-${DEFAULT_PORT_RANGE}\\}$`, "m"));
  t.regex(entry, new RegExp(`\\$\\{${RELAY_ENV.adminKeys}:-\\}`));
  t.regex(entry, new RegExp(`^CONF=${esc(path.dirname(RELAY_HOST_KEY_PATH))}$`, "m"));
  t.is(path.dirname(RELAY_ADMIN_KEYS_PATH), path.dirname(RELAY_HOST_KEY_PATH));
  t.regex(entry, /\$CONF\/ssh_host_ed25519_key/);
  t.regex(entry, /\$CONF\/admin_keys/);
  t.is(`${path.dirname(RELAY_HOST_KEY_PATH)}/${path.basename(RELAY_HOST_KEY_PATH)}`, RELAY_HOST_KEY_PATH);
  t.regex(lib, new RegExp(`^RUN=${esc(RELAY_RUN_DIR)}$`, "m"));
  t.regex(lib, new RegExp(`^STATE=${esc(RELAY_STATE_PATH)}$`, "m"));
  t.regex(relay("Dockerfile"), new RegExp(`^VOLUME ${esc(RELAY_STATE_PATH)}$`, "m"));
  const admin = relay("rtunneld-admin");
  t.regex(admin, new RegExp(`^STATE = f"\\{ROOT\\}${esc(RELAY_STATE_PATH)}"$`, "m"));
  t.regex(admin, new RegExp(`^RUN = f"\\{ROOT\\}${esc(RELAY_RUN_DIR)}"$`, "m"));
  t.is(RELAY_REGISTRY_FILE, `${RELAY_STATE_PATH}/registry/registry.json`);
  t.regex(admin, /^REGISTRY = f"\{REG_DIR\}\/registry\.json"$/m);
  t.is(RELAY_AUDIT_FILE, `${RELAY_STATE_PATH}/registry/audit.log`);
  t.regex(admin, /^AUDIT = f"\{REG_DIR\}\/audit\.log"$/m);
});

test("the relay's accounts and their fixed ids are the contract's, in the Dockerfile and in sshd_config", (t) => {
  const dockerfile = relay("Dockerfile");
  for (const [name, { uid }] of Object.entries(RELAY_ACCOUNTS)) {
    t.regex(dockerfile, new RegExp(`groupadd --gid ${uid} ${name} && useradd --uid ${uid} --gid ${uid} `), name);
  }
  const ssh = ["tunnel", "jump", "admin"];
  t.regex(relay("sshd_config"), new RegExp(`^AllowUsers ${ssh.join(" ")}$`, "m"));
  for (const a of ssh) t.regex(relay("sshd_config"), new RegExp(`^Match User ${a}$`, "m"));
});

test("the relay's exit codes and the admin protocol's name rule are the contract's", (t) => {
  const entry = relay("entrypoint");
  for (const [what, code] of Object.entries(RELAY_EXIT)) t.regex(entry, new RegExp(`fatal ${code} `), `${what} ${code}`);
  const readme = relay("README.md");
  for (const code of Object.values(RELAY_EXIT)) t.regex(readme, new RegExp(`\\b${code}\\b`));
  t.is(/NAME_RE = re\.compile\(r"([^"]+)"\)/.exec(relay("rtunneld-admin"))?.[1], NAME_PATTERN.source.replace(/^\^|\$$/g, ""));
});

test("the agent's directory, files, env keys, default target and backoff are the contract's", (t) => {
  const script = agent("agent");
  t.regex(script, new RegExp(`^CONF_DIR=\\$\\{RTUNNEL_CONFIG_DIR:-${esc(AGENT_CONF_DIR)}\\}$`, "m"));
  t.regex(script, new RegExp(`ENV_FILE=\\$CONF_DIR/${esc(AGENT_FILES.env)} KEY_FILE=\\$CONF_DIR/${esc(AGENT_FILES.key)} KNOWN_HOSTS=\\$CONF_DIR/${esc(AGENT_FILES.knownHosts)}`));
  t.regex(script, new RegExp(`^PREVIOUS_KEY_FILE=\\$CONF_DIR/${esc(AGENT_FILES.previousKey)} `, "m"));
  t.regex(script, new RegExp(`case \\$key in ${AGENT_ENV_KEYS.join(" \\| ")}\\) ;;`));
  t.regex(script, new RegExp(`^: "\\$\\{TARGET:=${esc(DEFAULT_TARGET)}\\}"$`, "m"));
  t.regex(script, new RegExp(`^BACKOFF_MIN_MS=${AGENT_BACKOFF.minMs} BACKOFF_MAX_MS=${AGENT_BACKOFF.maxMs} `, "m"));
  t.regex(script, new RegExp(`^STABLE_S=${AGENT_BACKOFF.stableS} `, "m"));
  t.regex(script, new RegExp(`^BUSY_MIN_MS=${AGENT_BACKOFF.busyMinMs} BUSY_MAX_MS=${AGENT_BACKOFF.busyMaxMs} `, "m"));
});

test("the agent's exit codes and state words are the contract's, in the script and its README", (t) => {
  const script = agent("agent");
  const readme = agent("README.md");
  for (const [what, code] of Object.entries(AGENT_EXIT)) {
    t.regex(script, new RegExp(code === 70 ? "exit 70" : `fatal ${code} `), `${what} ${code}`);
    t.regex(readme, new RegExp(`^\\| ${code} \\|`, "m"), `README row for ${code}`);
  }
  for (const state of AGENT_STATES) t.regex(script, new RegExp(`log "${state}[: ]`), state);
});

/** "15m" / "900" / "1h" in seconds (sshd's time format, the units the entrypoint accepts). */
const seconds = (v: string) => Number(v.replace(/[smh]$/, "")) * ({ s: 1, m: 60, h: 3600 }[v.slice(-1)] ?? 1);

test("the connection limits and the jump idle timeout: the entrypoint's defaults are the contract's, longer than ControlPersist", (t) => {
  const entry = relay("entrypoint");
  const lines = [...entry.matchAll(/^[A-Z_]+=\$\{(RTUNNELD_[A-Z_]+):-([^}]+)\}$/gm)].map((m) => [m[1], m[2]]);
  const defaults = Object.fromEntries(lines);
  for (const [account, { env, max }] of Object.entries(RELAY_CONNECTION_LIMITS)) {
    t.is(defaults[env], String(max), `${account}: ${env}`);
    // The account names the entrypoint writes into the limits file, in the same order as the lookup reads them.
    t.regex(entry, new RegExp(`${account} %s`), account);
  }
  t.is(defaults[RELAY_ENV.jumpUnusedTimeout], JUMP_UNUSED_TIMEOUT);
  t.true(seconds(JUMP_UNUSED_TIMEOUT) > seconds(CONTROL_PERSIST), `${JUMP_UNUSED_TIMEOUT} must exceed ControlPersist ${CONTROL_PERSIST}`);
  t.regex(relay("sshd_config"), /^Match User jump\n(?:\t.*\n)*\tInclude \/run\/rtunneld\/sshd_jump\.conf\n/m, "the jump block includes the timeout the entrypoint writes");
  t.regex(entry, /UnusedConnectionTimeout %s.*>"\$RUN\/sshd_jump\.conf"/);
  t.notRegex(relay("sshd_config"), /^Match User (tunnel|admin)\n(?:\t.*\n)*\tInclude /m, "no idle timeout for tunnel (a -R listener is not a channel) or admin");
});

/** The lines of one `Match User NAME` block of sshd_config (up to the next Match or the end). */
const matchBlock = (config: string, user: string) => {
  const start = config.indexOf(`\nMatch User ${user}\n`);
  const end = config.indexOf("\nMatch ", start + 1);
  return start < 0 ? "" : config.slice(start, end < 0 ? undefined : end);
};

test("certificates: sshd reads the user CA and the KRL where the contract says, only jump trusts the CA, and its principals command is the image's", (t) => {
  const config = relay("sshd_config");
  const global = config.slice(0, config.indexOf("\nMatch "));
  t.regex(global, new RegExp(`^RevokedKeys ${esc(RELAY_CA_PATHS.runKrl)}$`, "m"), "the KRL applies to every account, plain keys too");
  const jump = matchBlock(config, "jump");
  t.regex(jump, new RegExp(`^\\tTrustedUserCAKeys ${esc(RELAY_CA_PATHS.runUserCa)}$`, "m"));
  t.regex(jump, new RegExp(`^\\tAuthorizedPrincipalsCommand ${esc(RELAY_CERTIFICATES.principalsCommand)} %u %f %C %F %i %s %k$`, "m"));
  t.regex(jump, /^\tAuthorizedPrincipalsCommandUser rtkeys$/m);
  for (const user of ["tunnel", "admin"]) t.notRegex(matchBlock(config, user), /TrustedUserCAKeys|AuthorizedPrincipals/, `${user} trusts no CA`);
  t.notRegex(global, /TrustedUserCAKeys|AuthorizedPrincipals/, "nothing global trusts a CA");
  // Every key type the relay takes, also as a certificate.
  const algs = /^PubkeyAcceptedAlgorithms (\S+)$/m.exec(config)![1]!.split(",");
  const plain = algs.filter((a) => !a.includes("-cert-v01@"));
  t.deepEqual(algs.filter((a) => a.includes("-cert-v01@")).sort(), plain.map((a) => a.replace(/^(.*?)(@openssh\.com)?$/, "$1-cert-v01@openssh.com")).sort());
  // The image installs the command there, and the key lookup skips certificates (%t).
  t.regex(relay("Dockerfile"), new RegExp(`^COPY rtunneld-keys rtunneld-principals ${esc(path.dirname(RELAY_CERTIFICATES.principalsCommand))}/$`, "m"));
  t.regex(config, /^AuthorizedKeysCommand \S+ %u %f %C %t$/m);
});

test("certificates: the state volume's CA files, their runtime links and the admin command's limits are the contract's", (t) => {
  const admin = relay("rtunneld-admin");
  t.is(RELAY_CA_PATHS.stateDir, `${RELAY_STATE_PATH}/ca`);
  t.regex(admin, /^CA_DIR = f"\{STATE\}\/ca"$/m);
  t.is(RELAY_CA_PATHS.userCa, `${RELAY_CA_PATHS.stateDir}/user_ca.pub`);
  t.regex(admin, /^USER_CA = f"\{CA_DIR\}\/user_ca\.pub"$/m);
  t.is(RELAY_CA_PATHS.krl, `${RELAY_CA_PATHS.stateDir}/revoked.krl`);
  t.regex(admin, /^KRL = f"\{CA_DIR\}\/revoked\.krl"$/m);
  // sshd reads $RUN/user_ca.pub and $RUN/revoked.krl: links into the admin-owned $RUN/ca, where the admin command renames new files in.
  const entry = relay("entrypoint");
  t.is(path.dirname(RELAY_CA_PATHS.runUserCa), RELAY_RUN_DIR);
  t.is(path.dirname(RELAY_CA_PATHS.runKrl), RELAY_RUN_DIR);
  t.regex(entry, new RegExp(`^ln -sfn ca/${esc(path.basename(RELAY_CA_PATHS.runUserCa))} "\\$RUN/${esc(path.basename(RELAY_CA_PATHS.runUserCa))}"$`, "m"));
  t.regex(entry, new RegExp(`^ln -sfn ca/${esc(path.basename(RELAY_CA_PATHS.runKrl))} "\\$RUN/${esc(path.basename(RELAY_CA_PATHS.runKrl))}"$`, "m"));
  t.regex(admin, /^RUN_CA = f"\{RUN\}\/ca"$/m);
  t.regex(admin, new RegExp(`^RUN_USER_CA = f"\\{RUN_CA\\}/${esc(path.basename(RELAY_CA_PATHS.runUserCa))}"$`, "m"));
  t.regex(admin, new RegExp(`^RUN_KRL = f"\\{RUN_CA\\}/${esc(path.basename(RELAY_CA_PATHS.runKrl))}"$`, "m"));
  t.regex(admin, new RegExp(`^MAX_CA_KEYS = ${RELAY_CERTIFICATES.maxUserCaKeys}$`, "m"));
  t.regex(admin, new RegExp(`^MAX_KRL_BYTES = ${RELAY_CERTIFICATES.maxKrlBytes}$`, "m"));
  // The entrypoint renders them before sshd starts (an empty KRL when none was set).
  t.true(entry.indexOf("rtunneld-admin render-ca") > 0 && entry.indexOf("rtunneld-admin render-ca") < entry.indexOf("/usr/sbin/sshd -D -e"));
  t.regex(entry, new RegExp(`fatal ${RELAY_EXIT.caState} `));
});

test("rtunneld-admin imports only modules that python3-minimal on trixie imports (no tempfile: without shutil it raises at import)", (t) => {
  const imports = [...relay("rtunneld-admin").matchAll(/^(?:import|from) (\S+)/gm)].map((m) => m[1]!).sort();
  // Each checked with `python3 -c "import M"` in the relay image (python3-minimal only).
  const minimal = ["base64", "datetime", "errno", "fcntl", "grp", "hashlib", "json", "os", "re", "selectors", "socket", "subprocess", "sys", "time"];
  t.deepEqual(imports.filter((m) => !minimal.includes(m)), []);
});
