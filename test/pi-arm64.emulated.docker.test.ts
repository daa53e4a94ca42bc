// The Raspberry Pi end to end on linux/arm64, emulated (test/bed/pi.ts says what runs under QEMU).
// Its own CI step, on one Node version (.ci/run): minutes of emulation.
import test from "ava";
import { piEndToEnd } from "./bed/pi.ts";

piEndToEnd(test, "linux/arm64");
