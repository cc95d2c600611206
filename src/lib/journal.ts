import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { waitAtMost } from './abort.ts';
import type { LogLevel } from './json-log.ts';

/** The socket of the system journal's native protocol (systemd-journald). */
export const JOURNAL_SOCKET = '/run/systemd/journal/socket';

const PRIORITY: Record<LogLevel, number> = { debug: 7, info: 6, warn: 4, error: 3 };

export interface JournalEntry {
  /** The systemd unit the entry is about, such as `ironcore-backup-notify.service`. */
  unit: string;
  identifier: string;
  level: LogLevel;
  message: string;
  fields?: Record<string, string>;
}

export interface JournalWriter {
  write(entry: JournalEntry): void;
  /** Sends what is queued (at most `timeoutMs` of waiting), then stops. */
  close(timeoutMs?: number): Promise<void>;
}

/**
 * Writes entries to the system journal with util-linux `logger --journald`, one child at a time, in order.
 * Each entry carries `OBJECT_SYSTEMD_UNIT=<unit>`: for a process running as root, `journalctl -u <unit>`
 * shows it (journalctl matches that field from root's entries), so each service of the one server process
 * has a journal of its own under its own unit name. The queue is bounded: entries beyond `maxQueued` are
 * counted and reported in one entry once the queue drains. `onError` hears once of a writer that cannot run.
 */
export function journalWriter(options: { maxQueued?: number; onError?(message: string): void } = {}): JournalWriter {
  const maxQueued = options.maxQueued ?? 1000;
  const queue: JournalEntry[] = [];
  let dropped = 0;
  let running: Promise<void> | undefined;
  let failed = false;
  const send = (entry: JournalEntry): Promise<void> =>
    new Promise((resolve) => {
      const line = (name: string, value: string): string => `${name}=${value.replace(/[\r\n]+/g, ' ')}\n`;
      let text = line('MESSAGE', entry.message) + line('PRIORITY', String(PRIORITY[entry.level])) + line('SYSLOG_IDENTIFIER', entry.identifier) + line('OBJECT_SYSTEMD_UNIT', entry.unit) + line('SYSLOG_PID', String(process.pid));
      for (const [name, value] of Object.entries(entry.fields ?? {})) text += line(name, value);
      const child = spawn('logger', ['--journald'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const fail = (why: string): void => {
        if (!failed) options.onError?.(`cannot write to the system journal (${why}): the service logs stay in their files only`);
        failed = true;
      };
      child.on('error', (error) => {
        fail(`logger: ${error.message}`);
        resolve();
      });
      child.on('close', (code) => {
        if (code !== 0 && code !== null) fail(`logger --journald exited with ${code}${stderr ? `: ${stderr.trim()}` : ''}`);
        resolve();
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(text);
    });
  const drain = async (): Promise<void> => {
    while (queue.length > 0 && !failed) {
      await send(queue.shift() as JournalEntry);
      if (queue.length === 0 && dropped > 0) {
        const last = { unit: 'ironcore-backup.service', identifier: 'ironcore-backup', level: 'warn' as const, message: `${dropped} log entries were not sent to the journal (more than ${maxQueued} waiting); the service log files have them` };
        dropped = 0;
        queue.push(last);
      }
    }
    queue.length = 0;
    running = undefined;
  };
  return {
    write(entry) {
      if (failed) return;
      if (queue.length >= maxQueued) {
        dropped++;
        return;
      }
      queue.push(entry);
      running ??= drain();
    },
    async close(timeoutMs = 2000) {
      if (running) await waitAtMost(running, timeoutMs);
      failed = true; // nothing more after close
    },
  };
}

/**
 * Whether the server should write to the journal when not told: it runs as a systemd service (systemd sets
 * `INVOCATION_ID`), as root (journalctl -u shows only root's entries about another unit), and the journal's
 * socket exists.
 */
export function journalByDefault(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.INVOCATION_ID !== undefined && process.getuid?.() === 0 && existsSync(JOURNAL_SOCKET);
}
