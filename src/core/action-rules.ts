import { MAX_DOWNTIME_LIMIT_MS, type Action, type ControllerState } from '../policy/types.js';

/** What the core asks a driver to do to QEMU (through QMP, libvirt, or the model). */
export type Command =
  | { kind: 'setDowntimeLimit'; downtimeLimitMs: number }
  | { kind: 'startPostcopy' }
  | { kind: 'stopSource' }
  | { kind: 'cancel' }
  /** Post-copy's link went silent: `migrate-pause` both sides so it can be recovered. */
  | { kind: 'pausePostcopy' }
  /** Resume a paused post-copy over a new connection (`migrate-recover`, then `migrate` with resume). */
  | { kind: 'recoverPostcopy' }
  /** The vCPU throttle QEMU applies at its next check, % (auto-converge's parameters). */
  | { kind: 'setThrottle'; percent: number };

/** The controller's memory of what it did that the rules depend on. */
export interface Latches {
  downtimeLimitMs: number;
  /** The `postcopy-ram` capability is set on both sides. */
  postcopyEnabled: boolean;
  /** `requested`: a switch was sent and not refused; `started`: a post-copy status or a successful switch. */
  postcopy: 'no' | 'requested' | 'started';
  /** The auto-converge capability is on (the throttle can be steered). */
  throttleEnabled: boolean;
  /** The throttle last asked for, %. */
  throttlePercent: number;
  /** When the first forcing action (switchover, post-copy, pause) was sent, ms since `migrate`. */
  firstForcingAtMs: number | undefined;
}

/** One-shot actions: applied at most once per migration. A switchover may be raised again. */
const ONCE = new Set<Action['kind']>(['postcopy', 'pause', 'abort']);

/**
 * The action rules, the same for every policy and driver: which action becomes which command,
 * and which are refused. Updates `latches` and `applied` (the actions policies see as done).
 */
export function admit(
  action: Action,
  state: ControllerState,
  latches: Latches,
  applied: ControllerState['actions'],
): { commands: Command[]; refused?: string } {
  if (action.kind === 'continue') return { commands: [] };
  if (ONCE.has(action.kind) && applied.some((a) => a.kind === action.kind)) return { commands: [] };
  // Post-copy moved the guest (or may have): cancelling now would lose its newest memory.
  if (action.kind === 'abort' && (latches.postcopy !== 'no' || state.status.startsWith('postcopy')))
    return {
      commands: [],
      refused: 'post-copy is under way and cannot be cancelled: waiting for it to complete',
    };
  if (action.kind === 'postcopy' && !latches.postcopyEnabled)
    return { commands: [], refused: 'post-copy is not permitted (--allow-postcopy): ignored' };
  if (action.kind === 'throttle' && !latches.throttleEnabled)
    return {
      commands: [],
      refused: 'throttling needs the auto-converge capability, which this policy did not set: ignored',
    };
  applied.push({ kind: action.kind, atMs: state.elapsedMs, pass: state.currentPass });
  if (action.kind === 'switchover' || action.kind === 'postcopy' || action.kind === 'pause')
    latches.firstForcingAtMs ??= state.elapsedMs;
  switch (action.kind) {
    case 'setDowntimeLimit':
    case 'switchover': {
      const ms = Math.max(
        1,
        Math.min(MAX_DOWNTIME_LIMIT_MS, Math.round(action.downtimeLimitMs ?? MAX_DOWNTIME_LIMIT_MS)),
      );
      // A switchover never lowers the limit: that would undo an earlier, stronger one.
      if (ms === latches.downtimeLimitMs || (action.kind === 'switchover' && ms < latches.downtimeLimitMs))
        return { commands: [] };
      latches.downtimeLimitMs = ms;
      return { commands: [{ kind: 'setDowntimeLimit', downtimeLimitMs: ms }] };
    }
    case 'postcopy':
      latches.postcopy = latches.postcopy === 'started' ? 'started' : 'requested';
      return { commands: [{ kind: 'startPostcopy' }] };
    case 'pause':
      return { commands: [{ kind: 'stopSource' }] };
    case 'abort':
      return { commands: [{ kind: 'cancel' }] };
    case 'throttle': {
      const percent = Math.round(Math.min(99, Math.max(0, action.percent)));
      if (percent === latches.throttlePercent) return { commands: [] };
      latches.throttlePercent = percent;
      return { commands: [{ kind: 'setThrottle', percent }] };
    }
    default: {
      const never: never = action;
      throw new Error(`unhandled action ${JSON.stringify(never)}`);
    }
  }
}
