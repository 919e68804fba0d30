// Imported first by the CLI, for its side effect: SIGTERM and SIGINT end the process from the moment its
// code runs. As PID 1 of a container, Node has no default action for them, and the daemon installs its
// graceful handlers only after loading its modules (seconds): a pod stopped while starting would otherwise
// wait out its whole grace period. The daemon calls releaseEarlySignals() once its own handlers are in.
const exitEarly = (signal: NodeJS.Signals) => process.exit(signal === 'SIGTERM' ? 143 : 130);
process.once('SIGTERM', exitEarly).once('SIGINT', exitEarly);

export function releaseEarlySignals(): void {
  process.off('SIGTERM', exitEarly).off('SIGINT', exitEarly);
}
