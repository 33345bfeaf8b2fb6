import { closeSync, constants, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { UsageError } from './errors.js';

/**
 * Writes a whole file so that nobody ever sees half of it and no symlink planted at the path is
 * followed: a fresh temp file beside it (O_EXCL | O_NOFOLLOW), then rename over the target (rename
 * replaces a link itself, never its target).
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o644,
  );
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Reads an input file the user named: it must be a regular file (not a device, FIFO or
 * directory) no larger than `maxBytes`. Errors name the file and what to do.
 */
export function readInputFile(file: string, maxBytes: number, what = 'file'): string {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === 'ENOENT'
        ? `${what} ${file} does not exist`
        : `cannot open ${what} ${file}: ${(err as Error).message}`,
    );
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UsageError(`${what} ${file} is not a regular file`);
    if (st.size > maxBytes)
      throw new UsageError(
        `${what} ${file} is ${st.size} bytes, over the limit of ${maxBytes}: is it the right file?`,
      );
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < st.size) {
      const n = readSync(fd, buf, off, st.size - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
