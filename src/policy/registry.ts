import type { z } from 'zod';
import { UsageError } from '../util/errors.js';
import { adaptive } from './adaptive.js';
import { autoConverge } from './auto-converge.js';
import { frs } from './frs.js';
import { mp } from './mp.js';
import { kubevirt } from './kubevirt.js';
import { kubevirtRamp } from './kubevirt-ramp.js';
import { kubevirtStall } from './kubevirt-stall.js';
import { nova } from './nova.js';
import { postcopyAfter } from './postcopy-after.js';
import { proxmox } from './proxmox.js';
import { relaxed } from './relaxed.js';
import { stock } from './stock.js';
import { switchAtPass } from './switch-at-pass.js';
import type { Policy } from './types.js';
import { throttle } from './throttle.js';
import { xen } from './xen.js';

/** A policy name or option is wrong (a usage error: exit 2, nothing changed). */
export class PolicyConfigError extends UsageError {
  override readonly code: string = 'policy-config';
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const POLICIES: Record<string, Policy<any>> = Object.fromEntries(
  [
    stock,
    relaxed,
    nova,
    kubevirt,
    autoConverge,
    postcopyAfter,
    switchAtPass,
    frs,
    mp,
    adaptive,
    kubevirtStall,
    kubevirtRamp,
    proxmox,
    xen,
    throttle,
  ].map((p) => [p.name, p]),
);

export interface ResolvedPolicy<C = unknown> {
  policy: Policy<C>;
  config: C;
}

/** Looks a policy up by name and validates its options (`k=v` strings from the CLI, or an object). */
export function resolvePolicy(name: string, options: Record<string, unknown> = {}): ResolvedPolicy {
  const policy = POLICIES[name];
  if (!policy) {
    throw new PolicyConfigError(
      `unknown policy '${name}': choose one of ${Object.keys(POLICIES).join(', ')}`,
    );
  }
  const parsed = (policy.configSchema as z.ZodType).safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path.join('.') || Object.keys(options)[0] || '';
    const what =
      issue.code === 'unrecognized_keys'
        ? `unknown option ${issue.keys.join(', ')}`
        : `${key}: ${issue.message}`;
    throw new PolicyConfigError(`bad option for policy ${name}: ${what}`);
  }
  return { policy, config: parsed.data };
}

/** Parses CLI `--policy-opt k=v` pairs. */
export function parsePolicyOptions(pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new PolicyConfigError(`bad --policy-opt '${p}': use key=value`);
    out[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return out;
}
