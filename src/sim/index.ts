export { simulate, checkSimOptions, type SimOptions, type SimResult, type SimDecision } from './simulate.js';
export { workloadClasses, newlyDirtied, TCG_GUEST, type PageClass, type GuestFacts } from './model.js';
export {
  runSweep,
  simClasses,
  linkBps,
  validate,
  validationTable,
  type SweepOptions,
  type SweepRun,
} from './sweep.js';
export { readTrace, traceClasses, type Trace } from './trace.js';
