export { QemuVm, buildQemuArgv, type VmSpec } from './vm.js';
export { probeQemuVersion, qemuBinary, assertUsableForTcgMigration, type QemuVersion } from './binary.js';
