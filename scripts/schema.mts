// Writes the JSON Schema files of kvmigrate's machine-readable contract (docs/schema/) from the
// zod schemas in src/core/schema.ts: `npm run schema`. test/unit/schema.test.ts fails when the
// committed files differ from what this writes.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { jsonSchemas } from '../src/core/schema.js';

const dir = path.join(import.meta.dirname, '..', 'docs', 'schema');
mkdirSync(dir, { recursive: true });
for (const [name, schema] of Object.entries(jsonSchemas())) {
  writeFileSync(path.join(dir, name), JSON.stringify(schema, null, 2) + '\n');
  console.log(`wrote docs/schema/${name}`);
}
