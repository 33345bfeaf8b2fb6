/**
 * Errors whose message is written for the person at the keyboard: one line saying what is wrong
 * and what to do. The CLI prints `message` alone (stack traces only with --debug).
 */
export class KvmigrateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Something about the lab (image build, VMs, link) cannot be done. */
export class LabError extends KvmigrateError {}

/** The user's input is wrong: flags, workload strings, policy names or options. */
export class UsageError extends KvmigrateError {}
