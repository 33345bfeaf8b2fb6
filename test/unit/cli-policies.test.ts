import { describe, expect, it } from 'vitest';
import { policyDetailText, policyListText, policyOptionDocs } from '../../src/cli/policies-doc.js';
import { adaptive, kubevirt, mp, stock, switchAtPass } from '../../src/policy/index.js';
import type { Policy } from '../../src/policy/index.js';

// The policies this listing documents (only those existing when it was written: new ones appear
// in the registry on their own).
const DOCUMENTED = [
  'stock',
  'relaxed',
  'nova',
  'kubevirt',
  'auto-converge',
  'postcopy-after',
  'switch-at-pass',
  'frs',
  'mp',
  'adaptive',
];

describe('kvmigrate policies', () => {
  it('lists every policy with its summary', async () => {
    const { POLICIES } = await import('../../src/policy/index.js');
    const text = policyListText(POLICIES);
    for (const p of Object.values(POLICIES)) expect(text).toContain(`${p.name}`);
    expect(text).toMatch(/^stock +QEMU alone/m);
  });

  it('every option of the documented policies has a meaning', async () => {
    const { POLICIES } = await import('../../src/policy/index.js');
    for (const name of DOCUMENTED) {
      const p = POLICIES[name]!;
      for (const o of policyOptionDocs(p)) expect(o.meaning, `${name}.${o.name}`).not.toBe('');
    }
  });

  it('types, defaults and meanings come from the zod schemas', () => {
    const docs = Object.fromEntries(policyOptionDocs(mp as Policy<unknown>).map((d) => [d.name, d]));
    expect(Object.keys(docs)).toHaveLength(11);
    expect(docs.window).toMatchObject({ type: 'integer ≥ 2', default: '3' });
    expect(docs.stableJaccard).toMatchObject({ type: 'number 0–1', default: '0.8' });
    expect(docs.maxOverrun).toMatchObject({ type: 'number > 0', default: '4' });
    const a = Object.fromEntries(policyOptionDocs(adaptive as Policy<unknown>).map((d) => [d.name, d]));
    expect(Object.keys(a)).toHaveLength(16);
    expect(a.objective).toMatchObject({ type: 'downtime | total | data | balanced', default: 'downtime' });
    expect(a.horizon).toMatchObject({ type: 'integer 1–30', default: '6' });
    expect(a.xbzrle).toMatchObject({ type: 'boolean', default: 'false' });
    const k = Object.fromEntries(policyOptionDocs(kubevirt as Policy<unknown>).map((d) => [d.name, d]));
    expect(k.allowPostCopy).toMatchObject({ type: 'boolean', default: 'false' });
    expect(k.allowWorkloadDisruption).toMatchObject({ type: 'boolean', default: '(unset)' });
    const s = Object.fromEntries(policyOptionDocs(switchAtPass as Policy<unknown>).map((d) => [d.name, d]));
    expect(s.pass).toMatchObject({ default: '(required)' });
  });

  it('one policy: summary, then a row per option', () => {
    const text = policyDetailText(mp as Policy<unknown>);
    expect(text.split('\n')[0]).toBe(`mp: ${mp.summary}`);
    expect(text).toMatch(/^option +type +default +meaning$/m);
    expect(text).toMatch(/^hotMin +integer ≥ 1 +2 +A region is hot when/m);
    expect(policyDetailText(stock as Policy<unknown>)).toMatch(/no options\.$/);
  });
});
