// The device's own sshd and its tunnel on Debian bookworm (OpenSSH 9.2, as Raspberry Pi OS 12): test/device-sshd/cases.ts.
import { deviceSshdTests } from "./device-sshd/cases.ts";

deviceSshdTests("bookworm");
