import type { Command } from './action-rules.js';
import type { Controller, OperatorRequest } from './controller.js';

/** What a driver answers an operator's request with (control socket, `kvmigrate ctl`). */
export interface RequestReply {
  accepted: boolean;
  detail: string;
}

/**
 * An operator's request while the migration runs: through the core's action rules, then carried
 * out at once by the driver's `execute`. Resolves with what was done or why it was refused.
 */
export async function carryOutRequest(
  core: Controller | undefined,
  started: boolean,
  req: OperatorRequest,
  atMs: () => number,
  execute: (commands: Command[]) => Promise<void>,
): Promise<RequestReply> {
  if (!core || !started) return { accepted: false, detail: 'the migration has not started yet' };
  const v = core.request(req, atMs());
  if (v.refused) return { accepted: false, detail: v.refused };
  await execute(v.commands);
  return {
    accepted: true,
    detail: v.commands.length ? v.commands.map((c) => c.kind).join(', ') : 'nothing to change',
  };
}
