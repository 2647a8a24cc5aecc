/**
 * Repository name patterns, shared by access rules and local namespaces:
 * `*` matches any characters within one path component (never `/`), `**`
 * matches any characters including `/`; everything else is literal.
 * `acme/*` matches `acme/app` but not `acme/a/b`; `acme/**` matches both but
 * not `acme`; `**` matches every name.
 */

const compiled = new Map<string, RegExp>();
/** Patterns come from the config, so the cache stays small; the cap only guards against misuse. */
const maxCached = 1000;

/** The anchored regular expression for a pattern. */
export function compilePattern(pattern: string): RegExp {
  let re = compiled.get(pattern);
  if (re) return re;
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c !== '*') {
      source += c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
    } else if (pattern[i + 1] === '*') {
      source += '.*';
      // `***` and longer behave as `**`.
      while (pattern[i + 1] === '*') i++;
    } else {
      source += '[^/]*';
    }
  }
  re = new RegExp(`^${source}$`, 's');
  if (compiled.size >= maxCached) compiled.clear();
  compiled.set(pattern, re);
  return re;
}

/** Whether a repository name matches a pattern. */
export function matchesPattern(name: string, pattern: string): boolean {
  return compilePattern(pattern).test(name);
}
