/**
 * A minimal writer of the Linux initramfs format ("newc" cpio). Written here rather than calling
 * cpio(1) because it must create device nodes (/dev/console) without root and be byte-reproducible
 * (fixed mtimes), so that an unchanged input gives an unchanged image.
 */
export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Buffer; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

function pad4(len: number): Buffer {
  return Buffer.alloc((4 - (len % 4)) % 4);
}

function record(
  ino: number,
  mode: number,
  data: Buffer,
  name: string,
  rdev: [number, number] = [0, 0],
): Buffer[] {
  const nameBuf = Buffer.from(name + '\0');
  const fields = [ino, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0];
  const header = Buffer.from('070701' + fields.map(hex8).join(''), 'ascii');
  return [header, nameBuf, pad4(header.length + nameBuf.length), data, pad4(data.length)];
}

export function buildCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((e, i) => {
    const name = e.path.replace(/^\/+/, '');
    const ino = i + 1;
    switch (e.kind) {
      case 'dir':
        parts.push(...record(ino, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0), name));
        break;
      case 'file':
        parts.push(...record(ino, S_IFREG | (e.mode ?? 0o644), e.data, name));
        break;
      case 'symlink':
        parts.push(...record(ino, S_IFLNK | 0o777, Buffer.from(e.target), name));
        break;
      case 'chardev':
        parts.push(...record(ino, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), name, [e.major, e.minor]));
        break;
    }
  });
  parts.push(...record(0, 0, Buffer.alloc(0), 'TRAILER!!!'));
  return Buffer.concat(parts);
}
