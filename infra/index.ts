// The Pulumi program (Pulumi.yaml `main: infra/`): config in, one Relay, stack outputs out.
// The default export is a function so Pulumi (and the tests, under mocks) decide when the
// resources are built; importing this file creates nothing.

import * as pulumi from "@pulumi/pulumi";
import { parseRelayConfig } from "./config.ts";
import { Relay } from "./relay.ts";

export default function relayStack() {
  const config = new pulumi.Config("rtunnel");
  // All keys are checked before the first resource: a bad value stops `pulumi up` with one line.
  const settings = parseRelayConfig((key) => config.get(key));
  const relay = new Relay("relay", settings);
  return {
    relayHost: relay.relayHost,
    relayPort: relay.relayPort,
    relayHostKey: relay.relayHostKey,
    relayHostKeyFingerprint: relay.relayHostKeyFingerprint,
    instanceId: relay.instanceId,
  };
}
