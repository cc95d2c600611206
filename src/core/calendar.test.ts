import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { calendarIterations, formatCalendarEvent, nextCalendarEvent, parseCalendarEvent } from './calendar.ts';
import { IbsError } from './errors.ts';

const at = (iso: string): number => Date.parse(iso);
const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');

test('common schedules: "Sun 04:30", weekday ranges, repetitions, keywords', () => {
  const base = at('2026-11-22T02:25:00Z'); // a Sunday
  const next = (expr: string, n = 3): string[] => calendarIterations(parseCalendarEvent(`${expr} UTC`), base, n).map(iso);
  assert.deepEqual(next('Sun 04:30'), ['2026-11-22T04:30:00Z', '2026-11-29T04:30:00Z', '2026-12-06T04:30:00Z']);
  assert.deepEqual(next('mon..fri 08:00', 2), ['2026-11-23T08:00:00Z', '2026-11-24T08:00:00Z']);
  assert.deepEqual(next('*:0/15', 2), ['2026-11-22T02:30:00Z', '2026-11-22T02:45:00Z']);
  assert.deepEqual(next('*:*/20', 2), ['2026-11-22T02:40:00Z', '2026-11-22T03:00:00Z']);
  assert.deepEqual(next('quarterly', 2), ['2027-01-01T00:00:00Z', '2027-04-01T00:00:00Z']);
  assert.deepEqual(next('*-02-29', 2), ['2028-02-29T00:00:00Z', '2032-02-29T00:00:00Z']);
  assert.deepEqual(next('2025-01-01'), []);
  assert.equal(formatCalendarEvent(parseCalendarEvent('mon,tue,wed,fri 8..18/2:30')), 'Mon..Wed,Fri *-*-* 08..18/2:30:00');
  assert.equal(formatCalendarEvent(parseCalendarEvent('weekly')), 'Mon *-*-* 00:00:00');
});

test('malformed events are refused with the value and an example of what is expected', () => {
  for (const bad of ['', 'sunday funday', '25:00', '*-13-01', 'fri..mon', '*:61', '1..0:00', '* * *', '12:00 13:00', 'mon 2026-01-01-01']) {
    assert.throws(() => parseCalendarEvent(bad), (e) => e instanceof IbsError && e.code === 'INVALID_ARGUMENT' && e.message.includes('expected e.g.'), bad);
  }
});

test('property: the next elapse matches the event and nothing matches in between (checked second by second)', () => {
  fc.assert(
    fc.property(fc.constantFrom('*:0/7:30', 'mon,thu *-*-* 1..3:0/20', '*-*-1,15 12:00', 'hourly', '*:*:0/13', 'sat 23:59:59'), fc.integer({ min: 1_700_000_000, max: 1_900_000_000 }), (expr, start) => {
      const ev = parseCalendarEvent(`${expr} UTC`);
      const next = nextCalendarEvent(ev, start * 1000) as number;
      assert.ok(next > start * 1000);
      if (next - start * 1000 <= 86400_000) {
        for (let t = Math.floor(start) * 1000 + 1000; t < next; t += 1000) assert.notEqual(nextCalendarEvent(ev, t - 1000), t, `${expr}: ${iso(t)} would elapse before ${iso(next)}`);
      }
    }),
    { numRuns: 20 },
  );
});

// ---- oracle: systemd-analyze calendar ----------------------------------------------------------------------

const names = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

function pick<T>(r: () => number, items: readonly T[]): T {
  return items[Math.floor(r() * items.length)] as T;
}

function numberField(r: () => number, lo: number, hi: number, width: number): string {
  const n = (v: number): string => String(v).padStart(width, '0');
  const v = (): number => lo + Math.floor(r() * (hi - lo + 1));
  switch (Math.floor(r() * 6)) {
    case 0:
      return '*';
    case 1:
      return n(v());
    case 2: {
      const vals = [...new Set([v(), v(), v()])].sort((a, b) => a - b);
      return vals.map(n).join(',');
    }
    case 3: {
      const a = v();
      const b = a + Math.floor(r() * (hi - a + 1));
      return `${n(a)}..${n(b)}`;
    }
    case 4:
      return `${n(lo + Math.floor(r() * Math.min(5, hi - lo)))}/${1 + Math.floor(r() * Math.max(1, (hi - lo) / 3))}`;
    default: {
      const a = v();
      const b = a + Math.floor(r() * (hi - a + 1));
      return `${n(a)}..${n(b)}/${1 + Math.floor(r() * 4)}`;
    }
  }
}

function generate(r: () => number): string {
  if (r() < 0.05) return pick(r, ['minutely', 'hourly', 'daily', 'weekly', 'monthly', 'quarterly', 'semiannually', 'yearly', 'annually']);
  const parts: string[] = [];
  if (r() < 0.4) {
    const a = Math.floor(r() * 7);
    const b = a + Math.floor(r() * (7 - a));
    parts.push(r() < 0.5 ? `${names[a]}..${names[b]}` : [...new Set([names[a], names[b]])].join(','));
  }
  if (r() < 0.6) {
    const year = r() < 0.8 ? '*' : numberField(r, 2026, 2032, 4);
    parts.push(`${year}-${numberField(r, 1, 12, 2)}-${numberField(r, 1, 28 + Math.floor(r() * 4), 2)}`);
  }
  if (r() < 0.8 || parts.length === 0) {
    // Not "*" seconds: systemd then answers the base second itself (+1 µs); we answer strictly later seconds.
    let secondField = numberField(r, 0, 59, 2);
    while (secondField === '*') secondField = numberField(r, 0, 59, 2);
    const seconds = r() < 0.4 ? `:${secondField}` : '';
    parts.push(`${numberField(r, 0, 23, 2)}:${numberField(r, 0, 59, 2)}${seconds}`);
  }
  return parts.join(' ');
}

/** Asks systemd-analyze for the next 5 times of many expressions at once (rejected ones are left out). */
function systemdTimes(expressions: string[], base: string): Map<string, string[] | 'rejected'> {
  const out = new Map<string, string[] | 'rejected'>(expressions.map((e) => [e, 'rejected']));
  for (let i = 0; i < expressions.length; i += 60) {
    const batch = expressions.slice(i, i + 60);
    let text: string;
    try {
      text = execFileSync('systemd-analyze', ['calendar', `--base-time=${base}`, '--iterations=5', ...batch], { env: { ...process.env, TZ: 'UTC' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      text = String((error as { stdout?: string }).stdout ?? ''); // some were rejected; the others are printed
    }
    // Blocks start with "Original form:", which systemd leaves out when the expression is already normalized.
    let current: { original: string; normalized: boolean; times: string[] } | undefined;
    const flush = (): void => {
      if (current) out.set(current.original, current.times);
    };
    for (const line of text.split('\n')) {
      const original = /^\s*Original form: (.*)$/.exec(line)?.[1];
      const normalized = /^\s*Normalized form: (.*)$/.exec(line)?.[1];
      const time = /(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) UTC/.exec(line)?.[1];
      if (original !== undefined) {
        flush();
        current = { original, normalized: false, times: [] };
      } else if (normalized !== undefined) {
        if (current && !current.normalized) current.normalized = true;
        else {
          flush();
          current = { original: normalized, normalized: true, times: [] };
        }
      } else if (time !== undefined && current) current.times.push(`${time.replace(' ', 'T')}Z`);
    }
    flush();
  }
  return out;
}

test('for 300 generated expressions systemd accepts, the next 5 times equal systemd-analyze calendar', () => {
  let seed = 12345;
  const r = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const expressions = [...new Set(Array.from({ length: 320 }, () => generate(r)))];
  const base = '2026-11-22 02:25:17 UTC';
  const oracle = systemdTimes(expressions, base);
  let compared = 0;
  for (const [expr, times] of oracle) {
    if (times === 'rejected') continue;
    const ours = calendarIterations(parseCalendarEvent(`${expr} UTC`), at('2026-11-22T02:25:17Z'), 5).map(iso);
    assert.deepEqual(ours, times, `"${expr}"`);
    compared++;
  }
  assert.ok(compared >= 250, `only ${compared} expressions were accepted by systemd`);
});
