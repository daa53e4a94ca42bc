// The emulated tests (test/**/*.emulated.docker.test.ts): the Raspberry Pi end to end under
// QEMU, tens of minutes, so CI runs them in a step of their own on one Node version
// (`npm run test:emulated`, .ci/run) and `npm test` leaves them out. Everything else is
// package.json's ava configuration (with --config, ava reads only this file).
import { readFileSync } from "node:fs";

const { ava } = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"));

export default { ...ava, files: ["test/**/*.emulated.docker.test.ts"], timeout: "90m" };
