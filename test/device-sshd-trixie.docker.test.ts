// The device's own sshd and its tunnel on Debian trixie (OpenSSH 10.0, as current Raspberry Pi OS): test/device-sshd/cases.ts.
import { deviceSshdTests } from "./device-sshd/cases.ts";

deviceSshdTests("trixie");
