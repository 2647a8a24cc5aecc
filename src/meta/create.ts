import type { Config } from '../config/schema.ts';
import { MemoryMeta } from './memory.ts';
import type { MetaStore } from './meta.ts';

/** The metadata store the config asks for. The Redis client is loaded only when Redis is configured. */
export async function createMeta(config: Config['meta']): Promise<MetaStore> {
  switch (config.driver) {
    case 'memory':
      return new MemoryMeta({ maxEntries: config.memory.maxEntries });
    case 'redis': {
      const { RedisMeta } = await import('./redis.ts');
      return new RedisMeta(config.redis);
    }
  }
}
