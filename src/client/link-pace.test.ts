import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { LinkPace } from './link-pace.ts';

const MiB = 1024 * 1024;

/** How many requests the pace lets start at once (it waits for the next one). */
async function startable(pace: LinkPace, upTo: number): Promise<number> {
  let started = 0;
  for (let i = 0; i < upTo; i++) {
    const got = await Promise.race([pace.acquire().then(() => true), sleep(20).then(() => false)]);
    if (!got) break;
    started++;
  }
  return started;
}

/** A pace that has seen 4000 MiB answered over about 20 ms: 2 MiB per ms even if that took 2 s (a loaded machine). */
async function learned(roundTripMs: number): Promise<LinkPace> {
  const pace = new LinkPace(60_000, 4 * MiB, 10, () => roundTripMs);
  await pace.acquire();
  const since = pace.mark();
  await sleep(20);
  pace.answered(4000 * MiB, since);
  pace.done();
  return pace;
}

test('a link pace lets one request run before the first answer', async () => {
  assert.equal(await startable(new LinkPace(60_000, 4 * MiB, 10, () => 100), 5), 1);
});

test('a link pace lets max requests run without latency, and up to half as many more as its round trip holds', async () => {
  assert.equal(await startable(await learned(0), 30), 10);
  assert.equal(await startable(await learned(0.001), 30), 10, 'a round trip that holds less than a request adds none');
  assert.equal(await startable(await learned(100), 30), 15, 'capped at half of max more');
});
