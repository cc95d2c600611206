import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Login tickets for browsers: `IBS:<user>:<hex issue time>::<signature>`, HMAC-SHA-256 with the server's ticket
 * key, valid for two hours. A write with a ticket cookie must carry the CSRF token derived from the same ticket
 * in a header, which another site's page cannot read or forge.
 */
export const TICKET_LIFETIME_S = 2 * 3600;
export const TICKET_COOKIE = 'IBSAuthCookie';
export const CSRF_HEADER = 'csrfpreventiontoken';

function sign(key: Buffer, text: string): string {
  return createHmac('sha256', key).update(text).digest('base64url');
}

export function issueTicket(key: Buffer, user: string, now = Math.floor(Date.now() / 1000)): { ticket: string; csrf: string } {
  const body = `IBS:${user}:${now.toString(16).toUpperCase()}`;
  const ticket = `${body}::${sign(key, body)}`;
  return { ticket, csrf: csrfToken(key, ticket) };
}

export function csrfToken(key: Buffer, ticket: string): string {
  return sign(key, `csrf:${ticket}`);
}

/** The user a valid, unexpired ticket names; undefined otherwise. */
export function verifyTicket(key: Buffer, ticket: string, now = Math.floor(Date.now() / 1000)): string | undefined {
  const m = /^(IBS:([^:\s]+@[A-Za-z0-9._-]+):([0-9A-F]{1,12}))::([A-Za-z0-9_-]{43})$/.exec(ticket);
  if (!m) return undefined;
  const expected = Buffer.from(sign(key, m[1] as string));
  const given = Buffer.from(m[4] as string);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
  const issued = parseInt(m[3] as string, 16);
  if (issued > now + 300 || now - issued > TICKET_LIFETIME_S) return undefined;
  return m[2] as string;
}

export function checkCsrf(key: Buffer, ticket: string, header: string | undefined): boolean {
  if (!header) return false;
  const expected = Buffer.from(csrfToken(key, ticket));
  const given = Buffer.from(header);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

export function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  const text = Array.isArray(header) ? header.join('; ') : header;
  for (const part of (text ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}
