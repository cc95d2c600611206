/** Prints docs/cli.md from the command table, so the reference cannot drift from the code (a test checks it). */
import { COMMANDS, REMOTE_OPTIONS, usageOf, type OptionSpec } from '../src/cli/index.ts';
import { serverCommand } from '../src/bin/ironcore-backup.ts';
import { resolvePaths } from '../src/config/index.ts';
import { ERROR_CODES } from '../src/core/index.ts';

export function cliReference(): string {
  const out: string[] = [
    '# Command-line reference',
    '',
    'Generated from the command table (`node scripts/cli-doc.ts > docs/cli.md`); a test keeps it in step.',
    '',
    'Global options, accepted by every command: `--output text|json` (JSON on standard output for scripts;',
    'errors as a JSON object on standard error), `--quiet` (no progress or info lines), `--help`.',
    '',
    'Files live under `$IRONCORE_HOME` (`etc/` configuration, `lib/` state, `log/` logs, `data/` default',
    'datastore location) when it is set. Passphrases come from `--passphrase-file`, `IBS_PASSPHRASE` (and',
    '`IBS_NEW_PASSPHRASE` for a new one) or a prompt, never from an argument.',
    '',
  ];
  for (const c of [serverCommand(resolvePaths({ IRONCORE_HOME: '/' })), ...COMMANDS]) {
    out.push(`## ${c.path.join(' ')}`, '', c.summary, '', '```', `ironcore-backup ${usageOf(c)}`, '```', '');
    const options: Array<[string, OptionSpec]> = Object.entries({ ...(c.remote ? REMOTE_OPTIONS : {}), ...(c.options ?? {}) });
    if (options.length > 0) {
      out.push('| option | meaning |', '| --- | --- |');
      for (const [name, spec] of options) out.push(`| \`--${name}${spec.type === 'string' ? ' VALUE' : ''}\`${spec.multiple ? ' (repeatable)' : ''} | ${spec.help} |`);
      out.push('');
    }
  }
  out.push('## Exit codes', '', '| code | name | meaning |', '| --- | --- | --- |');
  for (const [name, v] of Object.entries(ERROR_CODES).sort((a, b) => a[1].exit - b[1].exit)) out.push(`| ${v.exit} | ${name} | ${v.help} |`);
  out.push('');
  return out.join('\n');
}

if (import.meta.main) process.stdout.write(cliReference());
