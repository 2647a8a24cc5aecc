import type { Config } from '../config/schema.ts';
import { MemoryMeta } from './memory.ts';
import type { MetaStore } from './meta.ts';
import { RedisMeta } from './redis.ts';

/** The metadata store the config asks for. */
export function createMeta(config: Config['meta']): MetaStore {
  switch (config.driver) {
    case 'memory':
      return new MemoryMeta({ maxEntries: config.memory.maxEntries });
    case 'redis':
      return new RedisMeta(config.redis);
  }
}
