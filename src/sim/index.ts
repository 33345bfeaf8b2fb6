export { simulate, checkSimOptions, type SimOptions, type SimResult, type SimDecision } from './simulate.js';
export { workloadClasses, newlyDirtied, TCG_GUEST, type PageClass, type GuestFacts } from './model.js';
export { runSweep, simClasses, linkBps, type SweepOptions, type SweepRun } from './sweep.js';
export { readTrace, traceClasses, type Trace } from './trace.js';
export { SharedLink, maxMinShare, type LinkVariation } from './link.js';
export { DEFAULT_PARAMS, type ModelParams } from './params.js';
export { SimRun } from './simulate.js';
export {
  buildFleet,
  readFleet,
  FleetSpecSchema,
  type Fleet,
  type FleetSpec,
  type FleetVm,
} from './fleet-spec.js';
export {
  evacuate,
  fixedConcurrency,
  novaStrategy,
  kubevirtStrategy,
  progressiveFill,
  predictor,
  type Prediction,
  type Strategy,
  type FleetResult,
  type VmOutcome,
} from './fleet.js';
export {
  plannerStrategy,
  planOptions,
  planEvacuation,
  type PlanEntry,
  type PlanOption,
  type PlannerOptions,
  type ChosenPlan,
} from './planner.js';
