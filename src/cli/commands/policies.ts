import type { Command } from 'commander';
import { POLICIES, resolvePolicy } from '../../policy/index.js';
import { policyDetailText, policyJsonSchema, policyListText } from '../policies-doc.js';

export function register(program: Command): void {
  program
    .command('policies')
    .description(
      "list the convergence policies, or one policy's options (--policy-opt) with type, default and meaning",
    )
    .argument('[name]', 'a policy')
    .option('--json', 'with NAME: the JSON Schema of its options; without: names and summaries')
    .action((name: string | undefined, o) => {
      if (name === undefined) {
        process.stdout.write(
          o.json
            ? JSON.stringify(Object.values(POLICIES).map((p) => ({ name: p.name, summary: p.summary }))) +
                '\n'
            : policyListText(POLICIES) + '\n',
        );
        return;
      }
      const policy = POLICIES[name];
      // The one unknown-policy check (and its message) lives in the registry.
      if (!policy) resolvePolicy(name);
      process.stdout.write(
        (o.json ? JSON.stringify(policyJsonSchema(policy!), null, 1) : policyDetailText(policy!)) + '\n',
      );
    });
}
