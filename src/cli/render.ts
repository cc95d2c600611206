import { formatBytes, formatDuration, formatRate, RateMeter, type ProgressEvent, type Reporter } from '../lib/index.ts';

/**
 * Rows as an aligned table of `columns` (keys of the rows; headers in capitals). A column named with a trailing
 * "?" is shown only when some row has a value for it (a PROBLEM column when something does not read). A list
 * is shown comma-separated, an object as name=value pairs.
 */
export function table(rows: readonly object[], allColumns: readonly string[]): string {
  if (rows.length === 0) return '(none)';
  const has = (key: string): boolean =>
    rows.some((r) => {
      const v = (r as Record<string, unknown>)[key];
      return v !== undefined && v !== null && v !== '';
    });
  const columns = allColumns.flatMap((c) => (!c.endsWith('?') ? [c] : has(c.slice(0, -1)) ? [c.slice(0, -1)] : []));
  const cells = rows.map((r) => columns.map((c) => {
    const v = (r as Record<string, unknown>)[c];
    if (v === undefined || v === null) return '';
    if (Array.isArray(v)) return v.join(',');
    // An object of settings (a prune job's keep rules): name=value pairs.
    if (typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k}=${String(x)}`).join(' ');
    return String(v);
  }));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] as string).length)));
  const line = (values: readonly string[]): string => values.map((v, i) => v.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n');
}

/** Key: value lines for an object (one level; nested values as JSON). */
export function keyValues(obj: Record<string, unknown>): string {
  const width = Math.max(...Object.keys(obj).map((k) => k.length));
  return Object.entries(obj)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
    .join('\n');
}

/**
 * Reports to a terminal: info and warnings as lines on stderr, progress as one line rewritten in place
 * (bytes, percent, rate, ETA), at most four times a second. Off a terminal, progress is not drawn.
 */
export class TerminalReporter implements Reporter {
  readonly #out: NodeJS.WriteStream;
  readonly #quiet: boolean;
  readonly #meter = new RateMeter();
  #last = 0;
  #drawn = false;
  warnings = 0;

  constructor(out: NodeJS.WriteStream, options: { quiet?: boolean } = {}) {
    this.#out = out;
    this.#quiet = options.quiet ?? false;
  }

  #clear(): void {
    if (this.#drawn) {
      this.#out.write('\r\x1b[K');
      this.#drawn = false;
    }
  }

  info(message: string): void {
    if (this.#quiet) return;
    this.#clear();
    this.#out.write(`${message}\n`);
  }

  warn(message: string): void {
    this.warnings++;
    this.#clear();
    this.#out.write(`warning: ${message}\n`);
  }

  get showsProgress(): boolean {
    return !this.#quiet && this.#out.isTTY === true;
  }

  progress(event: ProgressEvent): void {
    if (!this.showsProgress) return;
    const now = Date.now();
    const { rate } = this.#meter.update(event.done);
    if (now - this.#last < 250 && event.done !== event.total) return;
    this.#last = now;
    const eta = this.#meter.eta(event.done, event.total, rate);
    const fmt = event.unit === 'bytes' ? formatBytes : (n: number) => String(n);
    const parts = [event.phase, event.total !== undefined ? `${fmt(event.done)} / ${fmt(event.total)}` : fmt(event.done)];
    if (event.total) parts.push(`${Math.min(100, Math.floor((event.done / event.total) * 100))}%`);
    if (event.unit === 'bytes' && rate > 0) parts.push(formatRate(rate));
    if (eta !== undefined) parts.push(`ETA ${formatDuration(eta)}`);
    this.#out.write(`\r\x1b[K${parts.join('  ')}`);
    this.#drawn = true;
  }

  finish(): void {
    this.#clear();
  }
}
