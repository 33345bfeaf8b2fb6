import { z } from 'zod';
import { xbzrleCacheBytes } from '../policy/proxmox.js';
import type { PolicySetup } from '../policy/types.js';
import type { QmpClient } from '../qmp/index.js';

const CapabilitiesSchema = z
  .array(z.object({ capability: z.string().max(64), state: z.boolean() }).passthrough())
  .max(256);
const ParametersSchema = z.record(z.string(), z.unknown());

/** The capabilities the controller sets; the only ones it puts back. */
const OURS = ['events', 'postcopy-ram', 'auto-converge', 'xbzrle'];

export interface SavedSettings {
  capabilities: { capability: string; state: boolean }[];
  parameters: Record<string, number>;
}

/** Reads what the controller is about to change, so it can be put back on every way out. */
export async function saveSettings(qmp: QmpClient, parameterNames: string[]): Promise<SavedSettings> {
  const caps = CapabilitiesSchema.parse(await qmp.execute('query-migrate-capabilities'));
  const params = ParametersSchema.parse(await qmp.execute('query-migrate-parameters'));
  const parameters: Record<string, number> = {};
  for (const name of parameterNames) {
    const v = params[name];
    if (typeof v === 'number') parameters[name] = v;
  }
  return {
    capabilities: caps
      .filter((c) => OURS.includes(c.capability))
      .map(({ capability, state }) => ({ capability, state })),
    parameters,
  };
}

/** The capabilities a policy's setup needs on one side (auto-converge only matters on the source). */
export function capabilitiesFor(setup: PolicySetup, side: 'source' | 'destination') {
  return [
    { capability: 'events', state: true },
    { capability: 'postcopy-ram', state: setup.postcopy },
    ...(side === 'source' && setup.autoConverge ? [{ capability: 'auto-converge', state: true }] : []),
    // XBZRLE encodes on the source; the destination decodes whatever arrives.
    ...(side === 'source' && setup.xbzrle ? [{ capability: 'xbzrle', state: true }] : []),
  ];
}

/** The parameters a policy's setup sets before `migrate`, beyond downtime-limit and bandwidth. */
export function setupParameters(setup: PolicySetup, ramBytes: number): Record<string, number> {
  return {
    ...setup.parameters,
    ...(setup.xbzrle ? { 'xbzrle-cache-size': xbzrleCacheBytes(setup.xbzrle, ramBytes) } : {}),
  };
}

/**
 * Puts saved settings back. Capabilities cannot change while a migration runs, so they are put
 * back only once it is over; parameters always. Best effort: a side that is gone is skipped.
 */
export async function restoreSettings(
  qmp: QmpClient,
  saved: SavedSettings,
  migrationOver: boolean,
): Promise<void> {
  if (Object.keys(saved.parameters).length)
    await qmp.execute('migrate-set-parameters', saved.parameters).catch(() => undefined);
  if (migrationOver && saved.capabilities.length)
    await qmp
      .execute('migrate-set-capabilities', { capabilities: saved.capabilities })
      .catch(() => undefined);
}
