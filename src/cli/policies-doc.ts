import { z } from 'zod';
import type { Policy } from '../policy/index.js';

/** One `--policy-opt` of a policy, as `kvmigrate policies NAME` shows it. */
export interface PolicyOptionDoc {
  name: string;
  /** e.g. `integer ≥ 2`, `number 0–1`, `downtime | total`, `boolean`. */
  type: string;
  /** The default as you would type it, `(required)`, or `(unset)`. */
  default: string;
  meaning: string;
}

type JsonSchema = {
  type?: string | string[];
  enum?: unknown[];
  anyOf?: JsonSchema[];
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
};

/** The JSON Schema of a policy's options as `--policy-opt` takes them (zod's input side). */
export function policyJsonSchema(policy: Policy<unknown>): JsonSchema {
  return z.toJSONSchema(policy.configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
}

const JS_MAX_SAFE = Number.MAX_SAFE_INTEGER;

function typeOf(p: JsonSchema): string {
  if (p.enum) return p.enum.map(String).join(' | ');
  if (p.anyOf) {
    // `flag`: a boolean that also takes the strings true/false/1/0 from the command line.
    if (p.anyOf.some((a) => a.type === 'boolean')) return 'boolean';
    return p.anyOf.map(typeOf).join(' | ');
  }
  const base = p.type === 'integer' ? 'integer' : p.type === 'number' ? 'number' : String(p.type ?? 'any');
  const lo =
    p.exclusiveMinimum !== undefined
      ? `> ${p.exclusiveMinimum}`
      : p.minimum !== undefined
        ? `≥ ${p.minimum}`
        : undefined;
  const hiN = p.maximum !== undefined && p.maximum < JS_MAX_SAFE ? p.maximum : undefined;
  const hi =
    p.exclusiveMaximum !== undefined ? `< ${p.exclusiveMaximum}` : hiN !== undefined ? `≤ ${hiN}` : undefined;
  if (p.minimum !== undefined && hiN !== undefined) return `${base} ${p.minimum}–${hiN}`;
  return [base, lo, hi].filter(Boolean).join(' ');
}

/** Every option of a policy with its type, default and meaning, from its zod config schema. */
export function policyOptionDocs(policy: Policy<unknown>): PolicyOptionDoc[] {
  const js = policyJsonSchema(policy);
  // zod leaves the default out of the input side when the option transforms (the boolean flags).
  const out = z.toJSONSchema(policy.configSchema, { io: 'output', unrepresentable: 'any' }) as JsonSchema;
  const required = new Set(js.required ?? []);
  return Object.entries(js.properties ?? {}).map(([name, p]) => {
    const dflt = p.default ?? out.properties?.[name]?.default;
    return {
      name,
      type: typeOf(p),
      default: dflt !== undefined ? String(dflt) : required.has(name) ? '(required)' : '(unset)',
      meaning: p.description ?? '',
    };
  });
}

/** `kvmigrate policies`: one line per policy. */
export function policyListText(policies: Record<string, Policy<unknown>>): string {
  const rows = Object.values(policies).map((p) => [p.name, p.summary]);
  const w = Math.max(...rows.map((r) => r[0]!.length));
  return (
    rows.map(([n, s]) => `${n!.padEnd(w)}  ${s}`).join('\n') +
    '\n\nkvmigrate policies NAME shows its options (--policy-opt key=value).'
  );
}

/** `kvmigrate policies NAME`: the summary, then each option. */
export function policyDetailText(policy: Policy<unknown>): string {
  const docs = policyOptionDocs(policy);
  const head = `${policy.name}: ${policy.summary}`;
  if (docs.length === 0) return `${head}\n\nno options.`;
  const rows = [
    ['option', 'type', 'default', 'meaning'],
    ...docs.map((d) => [d.name, d.type, d.default, d.meaning]),
  ];
  // Left-aligned columns: `table` right-aligns all but the first, which suits numbers, not prose.
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
  return `${head}\n\n${lines.join('\n')}\n\nset with --policy-opt ${docs[0]!.name}=…`;
}
