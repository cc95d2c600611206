import { IbsError, calendarIterations, formatCalendarEvent, parseCalendarEvent } from '../core/index.ts';

export interface CalendarPreview {
  normalized: string;
  utc: boolean;
  next: string[];
}

/** The normalized form of a calendar event and its next elapses after `from` (default now). */
export function previewCalendar(input: { expression: string; iterations?: number; from?: string }): CalendarPreview {
  const ev = parseCalendarEvent(input.expression);
  const iterations = input.iterations ?? 5;
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > 1000) throw new IbsError('INVALID_ARGUMENT', `Invalid --iterations ${iterations}: expected 1 to 1000`);
  let from = Date.now();
  if (input.from !== undefined) {
    from = /^\d+$/.test(input.from) ? Number(input.from) * 1000 : Date.parse(input.from);
    if (!Number.isFinite(from)) throw new IbsError('INVALID_ARGUMENT', `Invalid --from "${input.from}": expected an ISO 8601 time such as 2026-11-22T02:25:00Z, or epoch seconds`);
  }
  const fmt = (ms: number): string => {
    const d = new Date(ms);
    if (ev.utc) return d.toISOString().replace('.000Z', 'Z');
    const offset = -d.getTimezoneOffset();
    const sign = offset >= 0 ? '+' : '-';
    const pad = (n: number): string => String(Math.abs(n)).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${sign}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
  };
  return { normalized: formatCalendarEvent(ev), utc: ev.utc, next: calendarIterations(ev, from, iterations).map(fmt) };
}
