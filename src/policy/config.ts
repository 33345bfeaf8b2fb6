import { z } from 'zod';

/** A boolean option that also accepts the strings `true`/`false`/`1`/`0` from `--policy-opt k=v`. */
export const flag = z.union([
  z.boolean(),
  z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1'),
]);
