// The policy pack started the way the Pulumi CLI starts it, and spoken to over gRPC the way
// the engine speaks to it. What the CLI does (pulumi/pulumi sdk/go/common/resource/plugin/
// analyzer_plugin.go, NewPolicyAnalyzer, for a nodejs pack): it runs the
// `pulumi-analyzer-policy` script in the pack's folder with the arguments
// [ENGINE_ADDRESS, ".", "-KEY=VALUE" for each runtime option of PulumiPolicy.yaml] and its
// own environment plus PULUMI_CONFIG and PULUMI_(NODEJS_)PROJECT/STACK/DRY_RUN; the script
// is `node "$(node -e "console.log(require.resolve('@pulumi/pulumi/cmd/run-policy-pack'))")" "$@"`.
// The pack prints its gRPC port on stdout; the CLI dials it, tries Handshake (the nodejs
// server answers UNIMPLEMENTED, which the CLI accepts), ConfigureStack, GetAnalyzerInfo,
// Configure (the policy config), then Analyze per resource and AnalyzeStack.
//
// The engine address: @pulumi/pulumi 3.248's runner drops argv[0] (cmd/run-policy-pack/
// index.js, `argv._.shift()`) and its log calls reach an engine only when
// PULUMI_NODEJS_ENGINE is set, which the CLI does not set for packs. A fake engine still
// listens at the address we pass and records every call, so a runner that does log to the
// engine finds one, and a failed test shows what it said.

import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import * as grpc from "@grpc/grpc-js";
import type * as analyzerGrpcT from "@pulumi/pulumi/proto/analyzer_grpc_pb.js";
import type * as analyzerPbT from "@pulumi/pulumi/proto/analyzer_pb.js";
import type * as engineGrpcT from "@pulumi/pulumi/proto/engine_grpc_pb.js";
import type * as emptyPbT from "google-protobuf/google/protobuf/empty_pb.js";
import type * as structPbT from "google-protobuf/google/protobuf/struct_pb.js";

// The generated modules and google-protobuf exactly as @pulumi/pulumi (and so the pack)
// resolves them: the generated serializers check `instanceof` against their own classes.
const pulumiRequire = createRequire(createRequire(import.meta.url).resolve("@pulumi/pulumi/proto/analyzer_grpc_pb.js"));
export const analyzerGrpc = pulumiRequire("./analyzer_grpc_pb.js") as typeof analyzerGrpcT;
export const analyzerPb = pulumiRequire("./analyzer_pb.js") as typeof analyzerPbT;
const engineGrpc = pulumiRequire("./engine_grpc_pb.js") as typeof engineGrpcT;
const emptyPb = pulumiRequire("google-protobuf/google/protobuf/empty_pb.js") as typeof emptyPbT;
const structPb = pulumiRequire("google-protobuf/google/protobuf/struct_pb.js") as typeof structPbT;

/** How the engine marks a secret value on the wire (sdk/go/common/resource/sig). */
export function secret(value: unknown): Record<string, unknown> {
  return { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", value };
}

export function struct(o: Record<string, unknown>): structPbT.Struct {
  return structPb.Struct.fromJavaScript(o as Record<string, structPbT.JavaScriptValue>);
}

export interface FakeEngine {
  address: string;
  calls: { method: string; request: unknown }[];
  close(): Promise<void>;
}

/** An Engine gRPC server that answers every method with an empty response and records the call. */
export async function startFakeEngine(): Promise<FakeEngine> {
  const server = new grpc.Server();
  const calls: FakeEngine["calls"] = [];
  const service = engineGrpc.EngineService as unknown as Record<string, { responseType: new () => unknown }>;
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [method, def] of Object.entries(service)) {
    handlers[method] = (call: grpc.ServerUnaryCall<{ toObject(): unknown }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      calls.push({ method, request: call.request.toObject() });
      callback(null, new def.responseType());
    };
  }
  server.addService(engineGrpc.EngineService as unknown as grpc.ServiceDefinition, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return {
    address: `127.0.0.1:${port}`,
    calls,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

export interface RunningPack {
  client: analyzerGrpcT.AnalyzerClient;
  process: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

export interface PackStart {
  /** the pack's folder (the CLI's --policy-pack argument) */
  dir: string;
  engine: string;
  /** PulumiPolicy.yaml's runtime options, passed as `-KEY=VALUE` */
  runtimeOptions?: Record<string, string>;
  project: string;
  stack: string;
  /** the environment the CLI itself runs in (NODE_OPTIONS and all) */
  env: NodeJS.ProcessEnv;
  /** bound on the pack's start (a hang guard, not a measurement) */
  startTimeoutMs?: number;
}

/** Starts the pack as `pulumi-analyzer-policy` does and connects to the port it prints. */
export async function startPolicyPack(o: PackStart): Promise<RunningPack> {
  const runner = createRequire(`${o.dir}/`).resolve("@pulumi/pulumi/cmd/run-policy-pack");
  const args = [runner, o.engine, ".", ...Object.entries(o.runtimeOptions ?? {}).map(([k, v]) => `-${k}=${v}`)];
  const env = {
    ...o.env,
    PULUMI_NODEJS_PROJECT: o.project, PULUMI_NODEJS_STACK: o.stack, PULUMI_NODEJS_DRY_RUN: "true",
    PULUMI_PROJECT: o.project, PULUMI_STACK: o.stack, PULUMI_DRY_RUN: "true",
  };
  const child = spawn(process.execPath, args, { cwd: o.dir, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => (stderr += d));
  const output = () => `stdout: ${stdout}\nstderr: ${stderr}`;
  const port = await new Promise<number>((resolve, reject) => {
    const limit = o.startTimeoutMs ?? 180_000;
    const timer = setTimeout(() => reject(new Error(`the policy pack printed no port within ${limit / 1000} s\n${output()}`)), limit);
    child.stdout.on("data", (d: string) => {
      stdout += d;
      const m = /^(\d+)\s*$/m.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the policy pack exited (code ${code}, signal ${signal}) before printing its port\n${output()}`));
    });
  });
  const client = new analyzerGrpc.AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    client,
    process: child,
    output,
    stop: async () => {
      client.close();
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}

/** One unary call as a promise. */
function unary<R>(f: (cb: (e: grpc.ServiceError | null, r: R) => void) => unknown): Promise<R> {
  return new Promise((resolve, reject) => f((e, r) => (e ? reject(e) : resolve(r))));
}

/** The calls the CLI makes, as promises. */
export function analyzer(c: analyzerGrpcT.AnalyzerClient) {
  type Pb = typeof analyzerPbT;
  return {
    getAnalyzerInfo: () => unary<InstanceType<Pb["AnalyzerInfo"]>>((cb) => c.getAnalyzerInfo(empty(), cb)),
    configureStack: (r: InstanceType<Pb["AnalyzerStackConfigureRequest"]>) => unary<InstanceType<Pb["AnalyzerStackConfigureResponse"]>>((cb) => c.configureStack(r, cb)),
    configure: (r: InstanceType<Pb["ConfigureAnalyzerRequest"]>) => unary<unknown>((cb) => c.configure(r, cb)),
    analyze: (r: InstanceType<Pb["AnalyzeRequest"]>) => unary<InstanceType<Pb["AnalyzeResponse"]>>((cb) => c.analyze(r, cb)),
    analyzeStack: (r: InstanceType<Pb["AnalyzeStackRequest"]>) => unary<InstanceType<Pb["AnalyzeResponse"]>>((cb) => c.analyzeStack(r, cb)),
  };
}

export const empty = () => new emptyPb.Empty();

export function resourceOptions(): analyzerPbT.AnalyzerResourceOptions {
  return new analyzerPb.AnalyzerResourceOptions().setCustomtimeouts(new analyzerPb.AnalyzerResourceOptions.CustomTimeouts());
}

/** An Analyze request for one hand-built resource, as the engine sends it. */
export function analyzeRequest(type: string, name: string, props: Record<string, unknown>, stack: string, project: string): analyzerPbT.AnalyzeRequest {
  return new analyzerPb.AnalyzeRequest()
    .setType(type)
    .setName(name)
    .setUrn(`urn:pulumi:${stack}::${project}::${type}::${name}`)
    .setProperties(struct(props))
    .setOptions(resourceOptions());
}

export function stackResource(type: string, name: string, props: Record<string, unknown>, stack: string, project: string): analyzerPbT.AnalyzerResource {
  return new analyzerPb.AnalyzerResource()
    .setType(type)
    .setName(name)
    .setUrn(`urn:pulumi:${stack}::${project}::${type}::${name}`)
    .setProperties(struct(props))
    .setOptions(resourceOptions());
}
