import { InvalidArgumentError } from 'commander';

export function positiveNumber(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${what} must be a number above 0`);
    return n;
  };
}

export function positiveInt(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0)
      throw new InvalidArgumentError(`${what} must be a whole number above 0`);
    return n;
  };
}

export function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function accel(v: string): 'tcg' | 'kvm' {
  if (v !== 'tcg' && v !== 'kvm') throw new InvalidArgumentError('use tcg or kvm');
  return v;
}

/** A comma-separated list option. */
export function list(v: string): string[] {
  return v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}
