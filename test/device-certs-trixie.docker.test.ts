// Fleet certificates on a device with Debian trixie (OpenSSH 10.0, as current Raspberry Pi OS): test/device-certs/cases.ts.
import { deviceCertsTests } from "./device-certs/cases.ts";

deviceCertsTests("trixie");
