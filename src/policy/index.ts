export * from './types.js';
export {
  POLICIES,
  resolvePolicy,
  checkPolicyName,
  policyLabel,
  parsePolicyOptions,
  PolicyConfigError,
  type ResolvedPolicy,
} from './registry.js';
export { stock } from './stock.js';
export { switchAtPass } from './switch-at-pass.js';
export { relaxed } from './relaxed.js';
export { nova, novaDowntimeSteps, novaDataGb } from './nova.js';
export { kubevirt } from './kubevirt.js';
export {
  kubevirtStall,
  replayStallDetector,
  ewmaBandwidth,
  iterationRecords,
  type IterationRecord,
  type StallReplay,
} from './kubevirt-stall.js';
export { kubevirtRamp, rampSchedule, type RampStep } from './kubevirt-ramp.js';
export { proxmox, replayProxmox, xbzrleCacheBytes, type ProxmoxPoll } from './proxmox.js';
export { xen } from './xen.js';
export { throttle } from './throttle.js';
export { autoConverge } from './auto-converge.js';
export { postcopyAfter } from './postcopy-after.js';
export { frs, frsRule, qemuWillConverge } from './frs.js';
export { mp, classify, hotSet, jaccard } from './mp.js';
export { adaptive, predictOptions } from './adaptive.js';
export { workingSetCurve, workingSetPoint, workingSetOf } from './working-set.js';
