/**
 * Access policy: who may pull, push and delete which repositories. A pure
 * function of the principal, the repository, the action and the configured
 * rules; no I/O.
 */
import type { AccessRule } from '../config/schema.ts';
import { matchesPattern } from './patterns.ts';

export type Action = 'pull' | 'push' | 'delete';

/** A logged-in user, or undefined for an anonymous client. */
export type Principal = { name: string } | undefined;

export interface Decision {
  allowed: boolean;
  /** The rule that decided; undefined when no rule matches the repository (denied). */
  rule: AccessRule | undefined;
}

/**
 * The first rule whose `repositories` pattern matches decides; no matching
 * rule means denied. A rule allows an action when one of its subjects for it
 * covers the principal: `$all` (everyone), `$anonymous` (unauthenticated
 * clients only), `$authenticated` (any logged-in user), a user name, or a
 * group name from `groups`. Other `$`-names match nobody.
 */
export function authorize(
  principal: Principal,
  repository: string,
  action: Action,
  rules: readonly AccessRule[],
  groups: Readonly<Record<string, readonly string[]>>,
): Decision {
  const rule = rules.find((r) => matchesPattern(repository, r.repositories));
  if (!rule) return { allowed: false, rule: undefined };
  return { allowed: rule[action].some((subject) => covers(subject, principal, groups)), rule };
}

function covers(subject: string, principal: Principal, groups: Readonly<Record<string, readonly string[]>>): boolean {
  switch (subject) {
    case '$all':
      return true;
    case '$anonymous':
      return principal === undefined;
    case '$authenticated':
      return principal !== undefined;
  }
  if (principal === undefined || subject.startsWith('$')) return false;
  if (subject === principal.name) return true;
  // hasOwn: a group called `constructor` must not find Object.prototype's.
  return Object.hasOwn(groups, subject) && groups[subject]!.includes(principal.name);
}
