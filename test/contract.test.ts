// The relay contract is written in TypeScript (infra/relayContainer.ts) and again in the
// image's own files: these tests hold the image to the TypeScript values.
import { readFileSync } from "node:fs";
import path from "node:path";
import test from "ava";
import { DEFAULT_PORT_RANGE, RELAY_CONTAINER_PORT, RELAY_READY_LINE } from "../lib/contract/relay.ts";
import { repoRoot } from "../lib/paths.ts";

const image = (file: string) => readFileSync(path.join(repoRoot, "images", "rtunneld", file), "utf8");

test("the relay's sshd port is the contract's container port in sshd_config, the entrypoint and the Dockerfile", (t) => {
  t.deepEqual([...image("sshd_config").matchAll(/^Port (\d+)$/gm)].map((m) => Number(m[1])), [RELAY_CONTAINER_PORT]);
  t.regex(image("entrypoint"), new RegExp(`^SSHD_PORT=${RELAY_CONTAINER_PORT} `, "m"));
  t.regex(image("Dockerfile"), new RegExp(`^EXPOSE ${RELAY_CONTAINER_PORT}$`, "m"));
});

test("the entrypoint prints the contract's ready line, and only after its listening check", (t) => {
  const entry = image("entrypoint");
  const m = /log "(ready: sshd listening on port \$SSHD_PORT)[^"]*"/.exec(entry);
  t.truthy(m, "no ready line in the entrypoint");
  const prefix = /^log\(\) \{ printf '([^%]*)%s\\n'/m.exec(entry)?.[1];
  t.is(`${prefix}${m![1]!.replace("$SSHD_PORT", String(RELAY_CONTAINER_PORT))}`, RELAY_READY_LINE);
  const ready = entry.indexOf(m![0]);
  t.true(entry.indexOf("/usr/sbin/sshd -D -e") < ready, "the ready line comes before sshd is started");
  t.true(entry.lastIndexOf("listening &&", ready) > entry.indexOf("/usr/sbin/sshd -D -e"), "no listening check between starting sshd and the ready line");
});

test("the entrypoint's default port range is the contract's", (t) => {
  t.regex(image("entrypoint"), new RegExp(`^PORT_RANGE=\\$\\{RTUNNELD_PORT_RANGE:-${DEFAULT_PORT_RANGE}\\}$`, "m"));
});
