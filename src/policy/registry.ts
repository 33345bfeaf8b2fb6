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

/** How a policy is shown in reports and results: its name, with the parameter that defines it. */
export function policyLabel(policyName: string, config: Record<string, unknown>): string {
  if (policyName === 'relaxed') return `relaxed(${String(config.downtimeLimitMs)})`;
  if (policyName === 'switch-at-pass' || policyName === 'postcopy-after')
    return `${policyName}(${String(config.pass)})`;
  return policyName;
}

/**
 * Refuses an unknown policy name in one line, listing what there is. `extra` names the callers'
 * own pseudo-policies (the bench's `relaxed` = relaxed(L*), `oracle`).
 */
export function checkPolicyName(name: string, extra: readonly string[] = []): void {
  if (POLICIES[name] || extra.includes(name)) return;
  throw new PolicyConfigError(
    `unknown policy '${name}': choose one of ${[...Object.keys(POLICIES), ...extra.filter((e) => !POLICIES[e])].join(', ')}`,
  );
}

export interface ResolvedPolicy<C = unknown> {
  policy: Policy<C>;
  config: C;
}

/** Looks a policy up by name and validates its options (`k=v` strings from the CLI, or an object). */
export function resolvePolicy(name: string, options: Record<string, unknown> = {}): ResolvedPolicy {
  checkPolicyName(name);
  const policy = POLICIES[name]!;
  const parsed = (policy.configSchema as z.ZodType).safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path.join('.') || Object.keys(options)[0] || '';
    const what =
      issue.code === 'unrecognized_keys'
        ? `unknown option ${issue.keys.join(', ')}`
        : key && options[key] === undefined
          ? `it needs option ${key} (--policy-opt ${key}=…; \`kvmigrate policies ${name}\` lists them)`
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
