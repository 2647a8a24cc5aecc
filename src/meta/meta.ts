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
  /**
   * In-process stores only: the value now, without waiting (undefined when
   * absent). It is shared between callers and must never be modified. Lets
   * a warm tag request be answered synchronously.
   */
  peek?<T>(key: string): Readonly<T> | undefined;
  close(): Promise<void>;
}
