/** Library API for orchestrators: run a controlled migration between two QEMU instances. */
export { MigrationSession, MigrationSetupError } from './migration/session.js';
export type { MigrationResult, SessionOptions, Decision, Progress, Outcome } from './migration/session.js';
export * as policies from './policy/index.js';
export { QmpClient, QmpError, QmpConnectionError } from './qmp/index.js';
export { Lab, migrateLab } from './lab/lab.js';
/** The simulator: the same controller core and policies over a model of QEMU and the link. */
export * as sim from './sim/index.js';
export { simulate, type SimOptions, type SimResult } from './sim/index.js';
export { evacuate, readFleet, buildFleet, plannerStrategy } from './sim/index.js';
export { runStrategies } from './bench/fleet-report.js';
/** Evacuating a host for real: a plan's VMs through the QMP or libvirt driver, N at a time or as the planner schedules them. */
export { evacuateQmp } from './migration/evacuate.js';
export { runQueue } from './util/queue.js';
export { evacuateLibvirt, type LibvirtEvacuee } from './libvirt/evacuate.js';
export { parsePlan, readPlan, scheduleFor, type EvacuationPlan } from './bench/evacuate.js';
