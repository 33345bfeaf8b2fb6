// The workload spec is shared by the lab, the simulator and the bench: it lives in util/specs.
export {
  formatWorkload,
  parseWorkload,
  workloadFootprintMib,
  WORKLOAD_FORMS,
  type WorkloadSpec,
} from '../util/specs.js';
