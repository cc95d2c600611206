import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { checkCsrf, csrfToken, issueTicket, verifyTicket } from './ticket.ts';

const key = randomBytes(32);

test('a ticket names its user until it expires; any change to it is refused', () => {
  const now = 1_800_000_000;
  const { ticket, csrf } = issueTicket(key, 'alice@ibs', now);
  assert.equal(verifyTicket(key, ticket, now + 60), 'alice@ibs');
  assert.equal(verifyTicket(key, ticket, now + 2 * 3600 + 1), undefined, 'expired');
  assert.equal(verifyTicket(randomBytes(32), ticket, now), undefined, 'other server key');
  assert.equal(verifyTicket(key, ticket.replace('alice', 'admin'), now), undefined, 'user swapped');
  assert.ok(checkCsrf(key, ticket, csrf));
  assert.ok(!checkCsrf(key, ticket, undefined));
  assert.ok(!checkCsrf(key, ticket, csrfToken(key, issueTicket(key, 'bob@ibs', now).ticket)));
  fc.assert(
    fc.property(fc.nat(ticket.length - 1), fc.integer({ min: 1, max: 120 }), (i, delta) => {
      const changed = ticket.slice(0, i) + String.fromCharCode(((ticket.charCodeAt(i) + delta) % 94) + 33) + ticket.slice(i + 1);
      if (changed !== ticket) assert.equal(verifyTicket(key, changed, now), undefined);
    }),
  );
});
