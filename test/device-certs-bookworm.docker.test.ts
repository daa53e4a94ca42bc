// Fleet certificates on a device with Debian bookworm (OpenSSH 9.2, as Raspberry Pi OS 12): test/device-certs/cases.ts.
import { deviceCertsTests } from "./device-certs/cases.ts";

deviceCertsTests("bookworm");
