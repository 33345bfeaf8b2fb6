import { InvalidArgumentError } from 'commander';

/**
 * Migration rates as operators write them. Bit rates follow `tc` and kvmigrate's own `--link`
 * (decimal: 1gbit = 10^9 bit/s); byte rates follow Kubernetes quantities as KubeVirt's
 * `bandwidthPerMigration` takes them (`64Mi` = 64 MiB/s, `100M` = 100 MB/s), optionally spelt
 * with `B/s` (`64MiB/s`, `100MB/s`). A bare number is refused: virsh reads it as MiB/s, Proxmox's
 * --bwlimit as KiB/s and QEMU as bytes/s, so it means something different to everyone.
 */
const UNITS: Record<string, number> = {
  kbit: 1e3 / 8,
  mbit: 1e6 / 8,
  gbit: 1e9 / 8,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
};

/** QEMU takes any 64-bit max-bandwidth; above 1 Tbit/s a cap is a typo. */
export const MAX_RATE_BPS = 1e12 / 8;

export const RATE_HELP = 'e.g. 200mbit, 1gbit, 2.5gbit (bit/s); 64Mi, 1Gi (MiB/s, GiB/s); 100M (MB/s)';

/** Parses a rate into bytes per second; throws with a one-line hint. */
export function parseRate(text: string, what = 'rate'): number {
  const s = text.trim();
  const m = /^(\d+(?:\.\d+)?)\s*(?:([kmgKMG]bit)|(k|K|M|G|Ki|Mi|Gi)(?:B\/s)?)$/.exec(
    s.replace(/bit$/i, 'bit'),
  );
  const unit = m?.[2]?.toLowerCase() ?? (m?.[3] === 'K' ? 'k' : m?.[3]);
  if (!m || unit === undefined) {
    const hint = /^\d+(\.\d+)?$/.test(s)
      ? 'give a unit (a bare number is MiB/s to virsh, KiB/s to Proxmox and bytes/s to QEMU)'
      : /[kmg]bps$/i.test(s)
        ? "write 'mbit' for megabits or 'M' for megabytes per second ('mbps' means either)"
        : /\dm(i|B\/s)?$/.test(s)
          ? "'m' is milli in Kubernetes quantities: write M (MB/s), Mi (MiB/s) or mbit"
          : `use ${RATE_HELP}`;
    throw new InvalidArgumentError(`bad ${what} '${text}': ${hint}`);
  }
  const bps = Number(m[1]) * UNITS[unit]!;
  if (!(bps >= 1)) throw new InvalidArgumentError(`bad ${what} '${text}': must be at least 1 byte/s`);
  if (bps > MAX_RATE_BPS) throw new InvalidArgumentError(`bad ${what} '${text}': at most 1000gbit`);
  return Math.round(bps);
}

/** `rateOption('--bandwidth')` for commander's argParser. */
export function rateOption(what: string) {
  return (v: string): number => parseRate(v, what);
}

/** `25000000` → `200 Mbit/s (23.8 MiB/s)`: both ways operators think of it. */
export function formatRate(bytesPerSecond: number): string {
  const bits = bytesPerSecond * 8;
  const b =
    bits >= 1e9 ? `${+(bits / 1e9).toFixed(2)} Gbit/s` : bits >= 1e6 ? `${+(bits / 1e6).toFixed(1)} Mbit/s` : `${+(bits / 1e3).toFixed(1)} kbit/s`; // prettier-ignore
  return `${b} (${+(bytesPerSecond / 2 ** 20).toFixed(1)} MiB/s)`;
}

/**
 * The max-bandwidth to give QEMU so that the wire stays under an operator's cap. QEMU's limiter
 * counts payload per ~100 ms window and overshoots, and TCP/IP adds its headers: measured on the
 * lab's veth, a 200 Mbit/s max-bandwidth put up to 224 Mbit/s on the wire over 1 s windows.
 */
export const WIRE_SHARE = 0.85;
export const qemuRateForWireCap = (capBps: number) => Math.floor(capBps * WIRE_SHARE);
