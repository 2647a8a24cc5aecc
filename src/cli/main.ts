#!/usr/bin/env node
import { Command } from 'commander';
import { ConfigError, loadConfig } from '../config/load.ts';
import { createLogger } from '../log.ts';
import { cacheCommand } from './cache.ts';
import { gcCommand } from './gc.ts';
import { userCommand } from './user.ts';
import { warmCommand } from './warm.ts';

const program = new Command();
program
  .name('tender')
  .description('A pull-through caching container registry (OCI Distribution / Docker Registry v2)')
  .showHelpAfterError();

function configFrom(file: string | undefined) {
  try {
    return loadConfig({ file: file ?? process.env.TENDER_CONFIG, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tender: invalid configuration\n${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

program
  .command('serve')
  .description('run the registry')
  .option('-c, --config <file>', 'YAML config file (default: $TENDER_CONFIG, else built-in defaults)')
  .action(async (opts: { config?: string }) => {
    const config = configFrom(opts.config);
    const logger = createLogger({ level: config.log.level });
    // Loaded here so that operator commands (user, gc, check-config) start quickly.
    const { startServer } = await import('../server.ts');
    const running = await startServer(config, logger);
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      running.close().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

program
  .command('check-config')
  .description('validate a config file (and environment overrides) and print the effective config')
  .option('-c, --config <file>', 'YAML config file')
  .action((opts: { config?: string }) => {
    const config = configFrom(opts.config);
    for (const up of Object.values(config.upstreams)) if (up.password) up.password = '<redacted>';
    process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  });

program.addCommand(userCommand());
program.addCommand(gcCommand());
program.addCommand(cacheCommand());
program.addCommand(warmCommand());
await program.parseAsync(process.argv);
