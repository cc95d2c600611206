import { parseArgs } from 'node:util';
import { IbsError, toIbsError, ERROR_CODES } from '../core/index.ts';
import type { AppContext } from '../app/index.ts';
import type { Reporter } from '../lib/index.ts';
import { COMMANDS, REMOTE_OPTIONS, remoteRepository, runRemote, usageOf, type Command, type ParsedArgs } from './commands.ts';
import { TerminalReporter } from './render.ts';

export interface CliDeps {
  version: string;
  /** Commands the composition root adds (the daemon). */
  extraCommands?: Command[];
  makeContext(reporter: Reporter, signal: AbortSignal): AppContext;
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
}

const GLOBAL_OPTIONS = {
  output: { type: 'string', help: 'text (default) or json' },
  quiet: { type: 'boolean', help: 'no progress or info lines' },
  help: { type: 'boolean', help: 'show help' },
} as const;

function usage(commands: Command[]): string {
  const lines = commands.map((c) => `  ${usageOf(c)}\n      ${c.summary}`);
  return [
    'Usage: ironcore-backup COMMAND [ARGS] [--output text|json] [--quiet]',
    '',
    'Commands:',
    ...lines,
    '',
    'Files live under $IRONCORE_HOME (etc/, lib/, log/, data/) when it is set.',
    `Exit codes: ${Object.entries(ERROR_CODES).map(([code, v]) => `${v.exit} ${code}`).join(', ')}.`,
  ].join('\n');
}

function findCommand(commands: Command[], words: string[]): { command: Command; rest: string[] } | undefined {
  let best: Command | undefined;
  for (const c of commands) {
    if (c.path.every((p, i) => words[i] === p) && (!best || c.path.length > best.path.length)) best = c;
  }
  return best ? { command: best, rest: words.slice(best.path.length) } : undefined;
}

/** Runs one command line; returns the exit code. Errors print one clear line (JSON with --output json). */
export async function runCli(argv: string[], deps: CliDeps): Promise<number> {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  let json = false;
  const controller = new AbortController();
  const onSignal = (): void => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort(new IbsError('ABORTED', 'Interrupted by signal'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const reporter = new TerminalReporter(stderr);
  const commands = [...COMMANDS, ...(deps.extraCommands ?? [])];
  try {
    if (argv[0] === '--version' || argv[0] === 'version') {
      stdout.write(`ironcore-backup ${deps.version} (node ${process.version})\n`);
      return 0;
    }
    if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
      stdout.write(`${usage(commands)}\n`);
      return 0;
    }
    const found = findCommand(commands, argv);
    if (!found) {
      const groups = [...new Set(commands.map((c) => c.path[0]))].join(', ');
      throw new IbsError('INVALID_ARGUMENT', `Unknown command "${argv.slice(0, 2).join(' ')}": expected one of ${groups} (see "ironcore-backup help")`);
    }
    const { command, rest } = found;
    const options = { ...GLOBAL_OPTIONS, ...(command.remote ? REMOTE_OPTIONS : {}), ...(command.options ?? {}) };
    let parsed: ParsedArgs;
    try {
      const r = parseArgs({
        args: rest,
        options: Object.fromEntries(Object.entries(options).map(([k, v]) => [k, { type: v.type, ...('multiple' in v && v.multiple ? { multiple: true } : {}) }])),
        allowPositionals: true,
        strict: true,
      });
      parsed = { positionals: r.positionals, values: r.values as ParsedArgs['values'] };
    } catch (error) {
      throw new IbsError('INVALID_ARGUMENT', `${((error as Error).message.split('\n')[0] ?? '').replace(/\.$/, '')} (usage: ironcore-backup ${command.usage})`);
    }
    const output = (parsed.values.output as string | undefined) ?? 'text';
    if (output !== 'text' && output !== 'json') throw new IbsError('INVALID_ARGUMENT', `Invalid --output "${output}": expected text or json`);
    json = output === 'json';
    if (parsed.values.help) {
      stdout.write(`Usage: ironcore-backup ${usageOf(command)}\n${command.summary}\n${Object.entries(options).map(([k, v]) => `  --${k}  ${v.help}`).join('\n')}\n`);
      return 0;
    }
    const [min, max] = typeof command.positionals === 'number' ? [command.positionals, command.positionals] : command.positionals;
    const repository = remoteRepository(command, parsed, min);
    if (parsed.positionals.length < min || parsed.positionals.length > max) {
      throw new IbsError('INVALID_ARGUMENT', `"${command.path.join(' ')}" takes ${min === max ? min : `${min} to ${max}`} argument(s), got ${parsed.positionals.length} (usage: ironcore-backup ${command.usage})`);
    }
    const quiet = parsed.values.quiet === true || json;
    const activeReporter = quiet ? new TerminalReporter(stderr, { quiet: true }) : reporter;
    const ctx = deps.makeContext(activeReporter, controller.signal);
    const result = repository !== undefined ? await runRemote(ctx, command, parsed, repository) : await command.run(ctx, parsed);
    activeReporter instanceof TerminalReporter && activeReporter.finish();
    if (json) stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else if (command.text) {
      const text = (command.text as (r: unknown) => string)(result);
      if (text !== '') stdout.write(`${text}\n`);
    } else stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return command.exitCode ? (command.exitCode as (r: unknown) => number)(result) : 0;
  } catch (error) {
    reporter.finish();
    const e = toIbsError(error);
    if (json) stderr.write(`${JSON.stringify({ error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } })}\n`);
    else stderr.write(`Error: ${e.message}\n`);
    if (e.code === 'INTERNAL' && process.env.IBS_DEBUG) stderr.write(`${(error as Error).stack}\n`);
    return e.exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
