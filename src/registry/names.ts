import { RegistryError } from './errors.ts';
import { looksLikeDigest, parseDigest } from './digest.ts';

/** OCI distribution-spec repository name grammar (path components separated by '/'). */
const componentPattern = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const tagPattern = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export const maxNameLength = 255;

export function isValidName(name: string): boolean {
  if (name.length === 0 || name.length > maxNameLength) return false;
  return name.split('/').every((c) => componentPattern.test(c));
}

export function requireName(name: string): string {
  if (!isValidName(name)) {
    throw new RegistryError('NAME_INVALID', { message: 'invalid repository name', detail: { name } });
  }
  return name;
}

export function isValidTag(tag: string): boolean {
  return tagPattern.test(tag);
}

/** A manifest reference: either a tag or a digest. */
export type Reference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: string };

export function parseReference(reference: string): Reference {
  if (looksLikeDigest(reference)) {
    const d = parseDigest(reference);
    if (!d) throw new RegistryError('DIGEST_INVALID', { message: 'invalid digest', detail: { reference } });
    return { kind: 'digest', digest: d.value };
  }
  if (!isValidTag(reference)) {
    throw new RegistryError('TAG_INVALID', { message: 'invalid tag', detail: { reference } });
  }
  return { kind: 'tag', tag: reference };
}
