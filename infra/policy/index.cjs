// The policy pack's entry as the Pulumi CLI starts it: `pulumi-analyzer-policy` runs
// `node $(require.resolve('@pulumi/pulumi/cmd/run-policy-pack')) ENGINE .` in this folder,
// and that runner require()s this package's "main" after registering its bundled ts-node
// (always, whatever PulumiPolicy.yaml's runtime options say). ts-node cannot compile our
// ESM TypeScript (`.ts` import paths, no `require` in ESM); plain CommonJS here passes
// through it untouched and hands index.ts to tsx, which the kit already uses for everything.
"use strict";
const { require: tsxRequire } = require("tsx/cjs/api");

tsxRequire("./index.ts", __filename);
