import { createHash, type Hash } from 'node:crypto';
import { RegistryError } from './errors.ts';

/** A parsed content digest, `algorithm:hex`. */
export interface Digest {
  readonly algorithm: 'sha256' | 'sha512';
  readonly hex: string;
  /** The canonical string form. */
  readonly value: string;
}

const lengths = { sha256: 64, sha512: 128 } as const;
const digestPattern = /^(sha256|sha512):([a-f0-9]+)$/;

/** Parses a digest string, or returns undefined when it is not a supported, well-formed digest. */
export function parseDigest(value: string): Digest | undefined {
  const m = digestPattern.exec(value);
  if (!m) return undefined;
  const algorithm = m[1] as Digest['algorithm'];
  const hex = m[2]!;
  if (hex.length !== lengths[algorithm]) return undefined;
  return { algorithm, hex, value };
}

/** Parses a digest or throws DIGEST_INVALID. */
export function requireDigest(value: string): Digest {
  const d = parseDigest(value);
  if (!d) throw new RegistryError('DIGEST_INVALID', { message: 'invalid digest', detail: { digest: value } });
  return d;
}

/** True when the string looks like a digest reference (contains an algorithm separator). */
export function looksLikeDigest(reference: string): boolean {
  return reference.includes(':');
}

export function digestOf(data: Uint8Array, algorithm: Digest['algorithm'] = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

/** Incremental digest verification: feed chunks, then check against the expected digest and size. */
export class DigestVerifier {
  readonly expected: Digest;
  private readonly hash: Hash;
  private bytes = 0;

  constructor(expected: Digest) {
    this.expected = expected;
    this.hash = createHash(expected.algorithm);
  }

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }

  get size(): number {
    return this.bytes;
  }

  /** Returns the actual digest once all bytes have been fed. */
  finish(): string {
    return `${this.expected.algorithm}:${this.hash.digest('hex')}`;
  }
}
