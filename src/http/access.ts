import type { Context, Next } from 'koa';
import { authorize, type Action } from '../auth/access.ts';
import type { AuthResult, Authenticator } from '../auth/authenticator.ts';
import type { AccessRule } from '../config/schema.ts';
import { RegistryError } from '../registry/errors.ts';
import type { Route } from '../routing.ts';

/** Who may do what: the authenticator, the rules and the groups they name. */
export interface AccessPolicy {
  authenticator: Authenticator;
  rules: readonly AccessRule[];
  groups: Readonly<Record<string, readonly string[]>>;
  /** Local namespace patterns, named in refusals of pushes to cached repositories. */
  localNamespaces: readonly string[];
}

/** Authenticates every request (Basic credentials, or anonymous) into ctx.state.principal. */
export function authenticate(policy: AccessPolicy) {
  return async function authenticateRequest(ctx: Context, next: Next): Promise<void> {
    ctx.state.principal = await policy.authenticator.authenticate(ctx.get('Authorization') || undefined, ctx.request.ip);
    await next();
  };
}

function principalOf(ctx: Context): { name: string } | undefined {
  const p = ctx.state.principal as AuthResult | undefined;
  return p?.kind === 'user' ? { name: p.name } : undefined;
}

/** Whether the request's principal may do `action` on a repository (no throw). */
export function mayAccess(ctx: Context, policy: AccessPolicy, accessName: string, action: Action): boolean {
  return authorize(principalOf(ctx), accessName, action, policy.rules, policy.groups).allowed;
}

/**
 * Throws unless the request may do `action` on the route: UNAUTHORIZED with
 * the Basic challenge for anonymous clients (so they log in), DENIED naming
 * the rule otherwise. Pushes and deletes of cached repositories are always
 * refused: they belong to their upstream.
 */
export function requireAccess(ctx: Context, policy: AccessPolicy, route: Route, action: Action): void {
  if (route.kind === 'upstream' && action !== 'pull') {
    throw new RegistryError('DENIED', {
      message: `${route.accessName} is a cache of upstream ${route.upstream}; pushes and deletes go to local namespaces (${policy.localNamespaces.join(', ') || 'none configured'})`,
      detail: { repository: route.accessName, action, localNamespaces: policy.localNamespaces },
    });
  }
  const principal = principalOf(ctx);
  const decision = authorize(principal, route.accessName, action, policy.rules, policy.groups);
  if (decision.allowed) return;
  if (!principal && policy.authenticator.enabled) {
    throw new RegistryError('UNAUTHORIZED', {
      headers: policy.authenticator.challenge(),
      detail: { repository: route.accessName, action },
    });
  }
  throw new RegistryError('DENIED', {
    message: decision.rule
      ? `access rule for ${decision.rule.repositories} does not allow ${action}`
      : `no access rule allows ${action} of ${route.accessName}`,
    detail: { repository: route.accessName, action, rule: decision.rule?.repositories ?? null },
  });
}
