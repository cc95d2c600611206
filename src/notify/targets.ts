import { spawn } from 'node:child_process';
import { IbsError } from '../core/index.ts';
import { retry } from '../lib/index.ts';
import type { NotificationEvent } from './event.ts';

/**
 * A target's settings. `problem`: the stored settings do not read (edited by hand into something invalid);
 * every delivery to it fails with that message, never with a guess at what was meant.
 */
export type TargetConfig = (
  | { type: 'webhook'; name: string; url: string; method: 'POST' | 'PUT' | 'GET'; headers: Record<string, string>; body?: string; comment?: string }
  | { type: 'sendmail'; name: string; mailto: string[]; from: string; path: string; comment?: string }
  | { type: 'smtp'; name: string; server: string; port: number; mode: 'starttls' | 'tls' | 'insecure'; username?: string; mailto: string[]; from: string; comment?: string }
) & { problem?: string };

/** Secrets of targets, kept apart from the configuration (0600 file): SMTP password, secret webhook headers. */
export interface TargetSecrets {
  password?: string;
  headers?: Record<string, string>;
}

export interface DeliveryOptions {
  attempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Overrides the target's recipients (target test --recipient). */
  recipients?: string[];
  log?: (msg: string, fields: Record<string, unknown>) => void;
  /** Stops waiting for the next attempt (a stopping server). */
  signal?: AbortSignal;
}

/** Fills {{title}}, {{message}}, {{severity}}, {{type}}, {{time}} and {{fields.NAME}}; JSON-escaped for JSON bodies. */
export function renderTemplate(template: string, event: NotificationEvent, json: boolean): string {
  const values: Record<string, string> = { title: event.title, message: event.message, severity: event.severity, type: event.type, time: new Date(event.time).toISOString() };
  return template.replace(/\{\{\s*([\w.-]+)\s*\}\}/g, (_m, key: string) => {
    const value = key.startsWith('fields.') ? (event.fields[key.slice(7)] ?? '') : (values[key] ?? '');
    return json ? JSON.stringify(value).slice(1, -1) : value;
  });
}

const DEFAULT_BODY = '{"title":"{{title}}","message":"{{message}}","severity":"{{severity}}","type":"{{type}}","time":"{{time}}"}';

function mailText(event: NotificationEvent): string {
  const fields = Object.entries(event.fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n');
  return `${event.message}\n\nseverity: ${event.severity}\ntype: ${event.type}\ntime: ${new Date(event.time).toISOString()}\n${fields}\n`;
}

function transient(error: unknown): boolean {
  return !(error instanceof IbsError) || error.code === 'UNAVAILABLE';
}

async function deliverWebhook(t: Extract<TargetConfig, { type: 'webhook' }>, secrets: TargetSecrets, event: NotificationEvent, signal?: AbortSignal): Promise<void> {
  const body = t.method === 'GET' ? undefined : renderTemplate(t.body ?? DEFAULT_BODY, event, true);
  const url = renderTemplate(t.url, event, false);
  const response = await fetch(url, {
    method: t.method,
    headers: { 'content-type': 'application/json', ...t.headers, ...(secrets.headers ?? {}) },
    ...(body !== undefined ? { body } : {}),
    ...(signal ? { signal } : {}),
  }).catch((error: Error) => {
    throw new IbsError('UNAVAILABLE', `webhook ${t.name}: ${error.message}`);
  });
  await response.arrayBuffer().catch(() => undefined);
  if (response.status >= 500 || response.status === 429) throw new IbsError('UNAVAILABLE', `webhook ${t.name}: HTTP ${response.status}`);
  if (response.status >= 300) throw new IbsError('INVALID_ARGUMENT', `webhook ${t.name}: HTTP ${response.status} (not retried)`);
}

function buildMail(from: string, to: string[], event: NotificationEvent): string {
  return [`From: ${from}`, `To: ${to.join(', ')}`, `Subject: ${event.title.replace(/[\r\n]/g, ' ')}`, 'Content-Type: text/plain; charset=utf-8', '', mailText(event)].join('\n');
}

async function deliverSendmail(t: Extract<TargetConfig, { type: 'sendmail' }>, event: NotificationEvent, recipients: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(t.path, ['-i', '--', ...recipients], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => reject(new IbsError('UNAVAILABLE', `sendmail ${t.name}: cannot run ${t.path}: ${e.message}`)));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new IbsError('UNAVAILABLE', `sendmail ${t.name}: ${t.path} exited with ${code}: ${stderr.trim()}`))));
    child.stdin.end(buildMail(t.from, recipients, event));
  });
}

async function deliverSmtp(t: Extract<TargetConfig, { type: 'smtp' }>, secrets: TargetSecrets, event: NotificationEvent, recipients: string[]): Promise<void> {
  const { createTransport } = await import('nodemailer');
  const transport = createTransport({
    host: t.server,
    port: t.port,
    secure: t.mode === 'tls',
    requireTLS: t.mode === 'starttls',
    ignoreTLS: t.mode === 'insecure',
    ...(t.username ? { auth: { user: t.username, pass: secrets.password ?? '' } } : {}),
    connectionTimeout: 15_000,
  });
  try {
    await transport.sendMail({ from: t.from, to: recipients, subject: event.title, text: mailText(event) });
  } catch (error) {
    const e = error as { responseCode?: number; message: string };
    throw new IbsError(e.responseCode !== undefined && e.responseCode < 500 ? 'UNAVAILABLE' : e.responseCode !== undefined ? 'INVALID_ARGUMENT' : 'UNAVAILABLE', `smtp ${t.name}: ${e.message}`);
  } finally {
    transport.close();
  }
}

/** Delivers one event to one target, retrying transient failures with exponential backoff up to a cap. */
export async function deliver(target: TargetConfig, secrets: TargetSecrets, event: NotificationEvent, options: DeliveryOptions = {}): Promise<void> {
  if (target.problem !== undefined) throw new IbsError('CORRUPT', target.problem);
  const recipients = options.recipients ?? ('mailto' in target ? target.mailto : []);
  await retry(
    async () => {
      switch (target.type) {
        case 'webhook':
          return deliverWebhook(target, secrets, event);
        case 'sendmail':
          return deliverSendmail(target, event, recipients);
        case 'smtp':
          return deliverSmtp(target, secrets, event, recipients);
      }
    },
    {
      attempts: options.attempts ?? 5,
      baseDelayMs: options.baseDelayMs ?? 1000,
      maxDelayMs: options.maxDelayMs ?? 60_000,
      retryable: transient,
      signal: options.signal,
      onRetry: (error, attempt, delayMs) => options.log?.('delivery failed, retrying', { target: target.name, attempt, delayMs, error: (error as Error).message }),
    },
  );
}
