// The one way a command stops on purpose: throw an ExitError. provision/cli.ts `main` prints
// its one-line message to stderr and exits with its code; anything else is a bug and gets a
// stack trace and exit 1.
export const EXIT = {
  /** bad arguments or input files */
  usage: 2,
  /** a host key did not match its pin, or was never pinned */
  hostKey: 3,
  /** the relay refused or failed (admin key, name taken, bad answer) */
  relay: 4,
  /** the device can't take part yet (ssh, sudo, Docker) */
  device: 5,
  /** the tunnel did not come up in time */
  timeout: 6,
  /** `status`: not every device is online (for cron and monitoring) */
  offline: 7,
} as const;

export class ExitError extends Error {
  override name = "ExitError";
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}
