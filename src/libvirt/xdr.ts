/**
 * XDR (RFC 4506) as libvirt's RPC uses it: big-endian 4-byte units, strings and variable opaque
 * data length-prefixed and padded to 4 bytes, optional values as a bool then the value, and
 * libvirt's typed parameters (a name and a value tagged with its type). Every length read from
 * the wire is bounded, so a bad or hostile message fails with XdrError instead of allocating.
 */

/** libvirt's own bound on a string (REMOTE_STRING_MAX). */
export const XDR_STRING_MAX = 1 << 20;
/** libvirt's bound on typed parameter lists (REMOTE_DOMAIN_JOB_STATS_MAX is 64; events use up to 2048). */
export const XDR_PARAMS_MAX = 2048;

export class XdrError extends Error {}

export type TypedValue = number | bigint | boolean | string;
export type TypedParams = Record<string, TypedValue>;

/** virTypedParameterType. */
export const PARAM = { int: 1, uint: 2, llong: 3, ullong: 4, double: 5, boolean: 6, string: 7 } as const;
export type ParamType = (typeof PARAM)[keyof typeof PARAM];

/** A parameter to send, with the wire type libvirt expects for its name. */
export interface OutParam {
  name: string;
  type: ParamType;
  value: TypedValue;
}

export class XdrWriter {
  private chunks: Buffer[] = [];

  int(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    return this.push(b);
  }
  uint(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    return this.push(b);
  }
  hyper(v: bigint | number): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(BigInt(v));
    return this.push(b);
  }
  uhyper(v: bigint | number): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(v));
    return this.push(b);
  }
  double(v: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    return this.push(b);
  }
  bool(v: boolean): this {
    return this.int(v ? 1 : 0);
  }
  string(s: string): this {
    return this.opaque(Buffer.from(s, 'utf8'));
  }
  /** libvirt's `remote_string`: a pointer to a string, NULL as a false flag. */
  optString(s: string | undefined): this {
    if (s === undefined) return this.bool(false);
    return this.bool(true).string(s);
  }
  opaque(data: Buffer): this {
    this.uint(data.length);
    return this.fixed(data);
  }
  fixed(data: Buffer): this {
    this.push(data);
    const pad = (4 - (data.length % 4)) % 4;
    return pad ? this.push(Buffer.alloc(pad)) : this;
  }
  params(list: OutParam[]): this {
    this.uint(list.length);
    for (const p of list) {
      this.string(p.name).int(p.type);
      switch (p.type) {
        case PARAM.int:
        case PARAM.boolean:
          this.int(Number(p.value));
          break;
        case PARAM.uint:
          this.uint(Number(p.value));
          break;
        case PARAM.llong:
          this.hyper(BigInt(p.value));
          break;
        case PARAM.ullong:
          this.uhyper(BigInt(p.value));
          break;
        case PARAM.double:
          this.double(Number(p.value));
          break;
        case PARAM.string:
          this.string(String(p.value));
          break;
      }
    }
    return this;
  }
  private push(b: Buffer): this {
    this.chunks.push(b);
    return this;
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export class XdrReader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.off + n > this.buf.length) throw new XdrError(`message truncated at byte ${this.off}`);
  }
  int(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.off);
    this.off += 4;
    return v;
  }
  uint(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  hyper(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.off);
    this.off += 8;
    return v;
  }
  uhyper(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.off);
    this.off += 8;
    return v;
  }
  double(): number {
    this.need(8);
    const v = this.buf.readDoubleBE(this.off);
    this.off += 8;
    return v;
  }
  bool(): boolean {
    return this.int() !== 0;
  }
  string(max = XDR_STRING_MAX): string {
    return this.opaque(max).toString('utf8');
  }
  optString(): string | undefined {
    return this.bool() ? this.string() : undefined;
  }
  opaque(max = XDR_STRING_MAX): Buffer {
    const len = this.uint();
    if (len > max) throw new XdrError(`length ${len} over the bound ${max}`);
    return this.fixed(len);
  }
  fixed(len: number): Buffer {
    const padded = len + ((4 - (len % 4)) % 4);
    this.need(padded);
    const out = this.buf.subarray(this.off, this.off + len);
    this.off += padded;
    return out;
  }
  /** Typed parameters; 64-bit values stay bigint only when they do not fit a double exactly. */
  params(max = XDR_PARAMS_MAX): TypedParams {
    const n = this.uint();
    if (n > max) throw new XdrError(`${n} typed parameters, over the bound ${max}`);
    const out: TypedParams = {};
    for (let i = 0; i < n; i++) {
      const name = this.string(256);
      const type = this.int();
      out[name] = this.paramValue(type);
    }
    return out;
  }
  private paramValue(type: number): TypedValue {
    switch (type) {
      case PARAM.int:
        return this.int();
      case PARAM.uint:
        return this.uint();
      case PARAM.llong:
        return toNumber(this.hyper());
      case PARAM.ullong:
        return toNumber(this.uhyper());
      case PARAM.double:
        return this.double();
      case PARAM.boolean:
        return this.bool();
      case PARAM.string:
        return this.string();
      default:
        throw new XdrError(`unknown typed parameter type ${type}`);
    }
  }
  get remaining(): number {
    return this.buf.length - this.off;
  }
}

function toNumber(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}
