import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolvePaths } from '../config/index.ts';
import { silentReporter } from '../lib/index.ts';
import { LocalBackend } from '../storage/local/index.ts';
import { createDatastore, createPruneJob, createVerifyJob, scheduledJobs, updateDatastore, type AppContext } from './index.ts';
import { configStores } from './context.ts';

test('scheduled verify, prune and GC runs end with a one-line summary (kept with the job state)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-app-jobs-'));
  try {
    const ctx: AppContext = { ...configStores(resolvePaths({ IRONCORE_HOME: dir })), openBackend: (c) => new LocalBackend({ root: c.path }), authId: 'root@pam', reporter: silentReporter };
    await createDatastore(ctx, { name: 'store1', path: join(dir, 'store1') });
    await updateDatastore(ctx, { name: 'store1', gcSchedule: 'daily' });
    await createVerifyJob(ctx, { id: 'v1', store: 'store1', schedule: 'daily' });
    await createPruneJob(ctx, { id: 'p1', store: 'store1', schedule: 'daily', keep: { 'keep-last': 1 } });
    const jobs = await scheduledJobs(ctx, (job, error) => assert.fail(`${job}: ${error.message}`));
    const task = { upid: 'u', signal: new AbortController().signal, log: () => {}, warn: () => {}, progress: () => {} };
    const summaries = new Map<string, unknown>();
    for (const job of jobs) summaries.set(job.id, ((await job.run(task)) as { summary?: unknown }).summary);
    assert.deepEqual([...summaries.keys()], ['verify/v1', 'prune/p1', 'gc/store1']);
    assert.match(String(summaries.get('verify/v1')), /^Verified 0 snapshots \(0 skipped\): 0 chunks, 0 B, all ok$/);
    assert.equal(summaries.get('prune/p1'), '0 group(s): kept 0 snapshot(s), removed 0');
    assert.match(String(summaries.get('gc/store1')), /^removed 0 chunk\(s\) \(0 B\), 0 pending \(0 B\), kept 0 \(0 B\); dedup factor [\d.]+$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
