import { readFile } from 'node:fs/promises';
import { IbsError } from '../core/index.ts';

/**
 * Passphrases come from a file (`--passphrase-file`), the environment (`IBS_PASSPHRASE`, and for a new one
 * `IBS_NEW_PASSPHRASE`), or a prompt on the terminal without echo. Never from a command-line argument, which
 * other users can see in the process list.
 */
export async function readPassphrase(options: { file?: string | undefined; envName?: string; prompt: string; confirm?: boolean }): Promise<string> {
  if (options.file !== undefined) {
    const text = await readFile(options.file, 'utf8').catch((error: Error) => {
      throw new IbsError('NOT_FOUND', `Cannot read passphrase file "${options.file}": ${error.message}`);
    });
    return text.replace(/\r?\n$/, '');
  }
  const fromEnv = options.envName !== undefined ? process.env[options.envName] : undefined;
  if (fromEnv !== undefined) return fromEnv;
  if (!process.stdin.isTTY) {
    throw new IbsError('INVALID_ARGUMENT', `A passphrase is needed: ${options.envName !== undefined ? `set ${options.envName}, ` : ''}pass --passphrase-file, or run on a terminal`);
  }
  const first = await prompt(options.prompt);
  if (options.confirm) {
    const second = await prompt('Repeat passphrase: ');
    if (first !== second) throw new IbsError('INVALID_ARGUMENT', 'The passphrases do not match');
  }
  return first;
}

function prompt(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    // Echo goes off before the prompt shows: whatever is typed (or pasted) as soon as it appears is not echoed.
    stdin.setRawMode(true);
    process.stderr.write(question);
    stdin.resume();
    let value = '';
    const onData = (data: Buffer): void => {
      for (const ch of data.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          done();
          reject(new IbsError('ABORTED', 'Passphrase entry interrupted'));
          return;
        }
        if (ch === '\u007f') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const done = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}
