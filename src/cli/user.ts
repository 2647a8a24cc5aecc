/**
 * `tender user add|rm`: manage the htpasswd file that tender's Basic
 * authentication reads (the server notices changes within a second).
 */
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { removeUser, setPassword } from '../auth/htpasswd.ts';
import { ConfigError, loadConfig } from '../config/load.ts';

interface FileOptions {
  htpasswd?: string;
  config?: string;
}

export function userCommand(): Command {
  const user = new Command('user').description('add, change or remove users of the htpasswd file');

  withFileOptions(user.command('add <name>'))
    .description('add a user, or set a new password for an existing one')
    .option('--password-stdin', 'read the password from stdin (else it is prompted for, twice, without echo)')
    .option('--cost <n>', 'bcrypt cost, 4-31', parseCost, 10)
    .action(async (name: string, opts: FileOptions & { passwordStdin?: boolean; cost: number }, cmd: Command) => {
      const file = htpasswdFile(opts, cmd);
      const password = opts.passwordStdin ? await passwordFromStdin() : await passwordFromTerminal(cmd);
      if (password === '') cmd.error('tender: the password is empty', { exitCode: 1 });
      await attempt(cmd, () => setPassword(file, name, password, opts.cost));
      process.stdout.write(`user ${name} set in ${file}\n`);
    });

  withFileOptions(user.command('rm <name>'))
    .description('remove a user')
    .action(async (name: string, opts: FileOptions, cmd: Command) => {
      const file = htpasswdFile(opts, cmd);
      if (!(await attempt(cmd, () => removeUser(file, name)))) cmd.error(`tender: no user ${name} in ${file}`, { exitCode: 1 });
      process.stdout.write(`user ${name} removed from ${file}\n`);
    });

  return user;
}

function withFileOptions(cmd: Command): Command {
  return cmd
    .option('--htpasswd <file>', 'the htpasswd file (default: auth.htpasswd of the config)')
    .option('-c, --config <file>', 'YAML config file (default: $TENDER_CONFIG)');
}

function parseCost(value: string): number {
  const cost = Number(value);
  if (!Number.isInteger(cost) || cost < 4 || cost > 31) throw new InvalidArgumentError('a whole number from 4 to 31');
  return cost;
}

/** --htpasswd, else the configured auth.htpasswd (relative to the config file, like every path in it). */
function htpasswdFile(opts: FileOptions, cmd: Command): string {
  if (opts.htpasswd) return path.resolve(opts.htpasswd);
  const file = opts.config ?? process.env.TENDER_CONFIG;
  let configured: string | undefined;
  try {
    configured = loadConfig({ file, env: process.env }).auth.htpasswd;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    cmd.error(`tender: invalid configuration\n${err.message}`, { exitCode: 2 });
  }
  if (!configured) cmd.error('tender: no htpasswd file: pass --htpasswd FILE, or set auth.htpasswd in the config (--config FILE)', { exitCode: 2 });
  return path.resolve(file ? path.dirname(path.resolve(file)) : process.cwd(), configured);
}

async function attempt<T>(cmd: Command, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (err) {
    cmd.error(`tender: ${err instanceof Error ? err.message : String(err)}`, { exitCode: 1 });
  }
}

/** All of stdin, less one trailing newline (as `echo secret |` adds). */
async function passwordFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

async function passwordFromTerminal(cmd: Command): Promise<string> {
  if (!process.stdin.isTTY) cmd.error('tender: stdin is not a terminal: pass the password with --password-stdin', { exitCode: 1 });
  const first = await promptHidden('Password: ');
  const second = await promptHidden('Repeat password: ');
  if (first !== second) cmd.error('tender: the passwords do not match', { exitCode: 1 });
  return first;
}

/** Reads one line from the terminal without echoing it. Ctrl-C aborts. */
function promptHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(prompt);
  input.setRawMode(true);
  input.setEncoding('utf8');
  input.resume();
  return new Promise((resolve) => {
    let value = '';
    const finish = (): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          finish();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          finish();
          process.exit(130);
        }
        if (ch === '\u007f' || ch === '\b') value = Array.from(value).slice(0, -1).join('');
        else if (ch >= ' ') value += ch;
      }
    };
    input.on('data', onData);
  });
}
