/**
 * The metadata seam: small keyed values with optional expiry (tag freshness,
 * upstream tokens, cached tag lists). In-process by default, Redis when
 * replicas share state. Both pass the contract suite in test/meta-contract.ts.
 */
export interface MetaStore {
  get<T>(key: string): Promise<T | undefined>;
  /** Stores a JSON-serialisable value; ttlMs bounds its life when given. */
  set<T>(key: string, value: T, ttlMs?: number): Promise<void>;
  delete(key: string): Promise<boolean>;
  close(): Promise<void>;
}
