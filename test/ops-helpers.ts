// What the op-stream tests share.

/** Rewrites a stream's checksums after a patch (FNV-1a over words, folded: op_format.h). */
export function rechecksum(bytes: Buffer): void {
  const fold = (from: number, to: number): bigint => {
    let h = 0xcbf29ce484222325n;
    for (let i = from; i < to; i += 8) h = ((h ^ bytes.readBigUInt64LE(i)) * 0x100000001b3n) & 0xffffffffffffffffn;
    return h ^ (h >> 32n);
  };
  bytes.writeBigUInt64LE(fold(96, bytes.length), 80);
  bytes.writeBigUInt64LE(fold(0, 88), 88);
}
