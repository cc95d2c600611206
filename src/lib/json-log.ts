import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type JsonLog = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

/**
 * A structured log: one JSON object per line with time, level, service, task (when given in fields) and msg,
 * appended to `path`. Synchronous appends keep lines whole and ordered across crashes. `mirror`, when given,
 * hears each entry too (the server's journal). Warnings and errors that cannot be appended go to stderr.
 */
export function jsonFileLog(path: string, service: string, mirror?: JsonLog): JsonLog {
  mkdirSync(dirname(path), { recursive: true });
  return (level, msg, fields = {}) => {
    const { task, ...rest } = fields;
    const line = JSON.stringify({ time: new Date().toISOString(), level, service, ...(task !== undefined ? { task } : {}), msg, ...(Object.keys(rest).length ? { fields: rest } : {}) });
    try {
      appendFileSync(path, `${line}\n`);
    } catch {
      // A full log disk must not stop the service; what it warns about then goes to standard error (which a
      // service manager keeps), so that it is not lost when it matters most.
      if (level === 'warn' || level === 'error') process.stderr.write(`${line}\n`);
    }
    mirror?.(level, msg, fields);
  };
}
