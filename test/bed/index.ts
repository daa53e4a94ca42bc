// The test bed: the fixture library (lib/fixtures), plus what only ava's tests need.
export * from "../../lib/fixtures/index.ts";
export { sharedWorldHooks, useScope } from "./scope.ts";
export { oneLine } from "./assert.ts";
