export * from './types.js';
export {
  POLICIES,
  resolvePolicy,
  parsePolicyOptions,
  PolicyConfigError,
  type ResolvedPolicy,
} from './registry.js';
export { stock } from './stock.js';
export { switchAtPass } from './switch-at-pass.js';
