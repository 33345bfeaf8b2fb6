import type { QmpClient } from '../qmp/index.js';
import { KvmigrateError } from '../util/errors.js';

const FOUR_GIB = 2 ** 32;

export interface RamRange {
  gpa: number;
  hva: number;
  length: number;
}

/**
 * Where guest RAM lives inside the QEMU process. On the pc machine RAM below 4 GiB is one
 * range from GPA 0; when -m reaches 3.5 GiB the low part stops at 3 GiB and the rest sits above
 * 4 GiB. Each range's host address comes from HMP `gpa2hva`.
 */
export async function guestRamRanges(qmp: QmpClient, ramBytes: number): Promise<RamRange[]> {
  const lowMem = ramBytes >= 0xe0000000 ? 0xc0000000 : ramBytes;
  const ranges = [{ gpa: 0, length: lowMem }];
  if (ramBytes > lowMem) ranges.push({ gpa: FOUR_GIB, length: ramBytes - lowMem });
  const out: RamRange[] = [];
  for (const r of ranges) {
    const text = await qmp.hmp(`gpa2hva 0x${r.gpa.toString(16)}`);
    const m = /is (0x[0-9a-f]+)/i.exec(text);
    if (!m) throw new KvmigrateError(`cannot locate guest RAM in QEMU (gpa2hva said: ${text.trim()})`);
    out.push({ ...r, hva: Number(BigInt(m[1]!)) });
  }
  return out;
}
