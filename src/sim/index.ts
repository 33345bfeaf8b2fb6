export { simulate, type SimOptions, type SimResult, type SimDecision } from './simulate.js';
export { workloadClasses, newlyDirtied, TCG_GUEST, type PageClass, type GuestFacts } from './model.js';
