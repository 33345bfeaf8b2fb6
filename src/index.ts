/** Library API for orchestrators: run a controlled migration between two QEMU instances. */
export { MigrationSession, MigrationSetupError } from './migration/session.js';
export type { MigrationResult, SessionOptions, Decision, Progress, Outcome } from './migration/session.js';
export * as policies from './policy/index.js';
export { QmpClient, QmpError, QmpConnectionError } from './qmp/index.js';
export { Lab, migrateLab } from './lab/lab.js';
