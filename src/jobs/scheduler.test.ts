import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobStateStore } from './job-state.ts';
import { Scheduler, type ScheduledJob } from './scheduler.ts';
import { TaskManager } from './task-manager.ts';
import { TaskStore } from './task-store.ts';

async function setup(): Promise<{ dir: string; tasks: TaskManager; store: TaskStore; state: JobStateStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-sched-'));
  const store = await TaskStore.open(dir);
  return { dir, store, tasks: await TaskManager.start({ store, node: 'n' }), state: new JobStateStore(dir) };
}

const at = (iso: string): number => Date.parse(iso);

test('a job runs when its calendar time has come, once, and again at the next time', async () => {
  const { dir, tasks, store, state } = await setup();
  let now = at('2026-11-22T04:00:00Z');
  let runs = 0;
  const job: ScheduledJob = { id: 'verify/weekly', schedule: 'Sun 04:30 UTC', type: 'verify', target: 'store1', authId: 'root@pam', run: async () => void runs++ };
  const scheduler = new Scheduler({ tasks, state, jobs: async () => [job], now: () => now });
  assert.deepEqual(await scheduler.tick(), []);
  now = at('2026-11-22T04:30:00Z');
  assert.deepEqual(await scheduler.tick(), ['verify/weekly']);
  await scheduler.stop();
  now = at('2026-11-22T04:31:00Z');
  assert.deepEqual(await scheduler.tick(), []);
  const [status] = await scheduler.status();
  assert.equal(status?.lastState, 'ok');
  assert.equal(new Date(status?.nextRun ?? 0).toISOString(), '2026-11-29T04:30:00.000Z');
  assert.equal(runs, 1);
  state.close();
  store.close();
  await rm(dir, { recursive: true, force: true });
});

test('runs missed while the server was down fire once after start; state survives a restart', async () => {
  const { dir, tasks, store, state } = await setup();
  let now = at('2026-11-20T00:00:30Z');
  let runs = 0;
  const job: ScheduledJob = { id: 'gc/store1', schedule: 'daily UTC', type: 'garbage_collection', target: 'store1', authId: 'root@pam', run: async () => void runs++ };
  const first = new Scheduler({ tasks, state, jobs: async () => [job], now: () => now });
  await first.tick(); // first seen: nothing due yet
  now = at('2026-11-21T00:00:10Z');
  assert.deepEqual(await first.tick(), ['gc/store1']);
  await first.stop();
  state.close();
  // "Restart" three days later: one run, not three.
  const reopened = new JobStateStore(dir);
  now = at('2026-11-24T09:00:00Z');
  const second = new Scheduler({ tasks, state: reopened, jobs: async () => [job], now: () => now });
  assert.deepEqual(await second.tick(), ['gc/store1']);
  await second.stop();
  assert.deepEqual(await second.tick(), []);
  assert.equal(runs, 2);
  reopened.close();
  store.close();
  await rm(dir, { recursive: true, force: true });
});

test('a job whose previous run is still going is not started again', async () => {
  const { dir, tasks, store, state } = await setup();
  let now = at('2026-11-22T00:00:00Z');
  let release!: () => void;
  let runs = 0;
  const job: ScheduledJob = {
    id: 'verify/minutely',
    schedule: 'minutely UTC',
    type: 'verify',
    target: 's',
    authId: 'root@pam',
    run: () => {
      runs++;
      return new Promise<void>((r) => (release = r));
    },
  };
  const scheduler = new Scheduler({ tasks, state, jobs: async () => [job], now: () => now });
  await scheduler.tick();
  now += 60_000;
  assert.deepEqual(await scheduler.tick(), ['verify/minutely']);
  now += 60_000;
  assert.deepEqual(await scheduler.tick(), []);
  release();
  await scheduler.stop();
  assert.equal(runs, 1);
  state.close();
  store.close();
  await rm(dir, { recursive: true, force: true });
});

test('a run that ends well keeps its summary line; the next start clears it; a database made before the column gets it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-sched-'));
  // A job database as the first release made it (no last_summary column), with one run recorded.
  const { DatabaseSync } = await import('node:sqlite');
  const old = new DatabaseSync(join(dir, 'jobs.db'));
  old.exec(`CREATE TABLE job_state (job_id TEXT PRIMARY KEY, first_seen INTEGER NOT NULL, last_start INTEGER, last_end INTEGER, last_state TEXT, last_status TEXT, last_upid TEXT);
    INSERT INTO job_state VALUES ('sync/old', 1, 2, 3, 'ok', 'OK', 'u');`);
  old.close();
  const store = await TaskStore.open(dir);
  const tasks = await TaskManager.start({ store, node: 'n' });
  const state = new JobStateStore(dir);
  assert.deepEqual(state.get('sync/old', 10), { jobId: 'sync/old', firstSeen: 1, lastStart: 2, lastEnd: 3, lastState: 'ok', lastStatus: 'OK', lastUpid: 'u' });
  let fail = false;
  const job: ScheduledJob = {
    id: 'sync/nightly',
    schedule: 'daily',
    type: 'syncjob',
    target: 'nightly',
    authId: 'root@pam',
    run: async () => {
      if (fail) throw new Error('remote unreachable');
      return { summary: 'transferred 1 MiB in 1 chunks; copied 1 snapshot(s)' };
    },
  };
  const scheduler = new Scheduler({ tasks, state, jobs: async () => [job], now: () => at('2026-11-22T04:30:00Z') });
  await scheduler.runNow('sync/nightly');
  await scheduler.stop();
  assert.equal(state.get('sync/nightly', 0).lastSummary, 'transferred 1 MiB in 1 chunks; copied 1 snapshot(s)');
  fail = true;
  await scheduler.runNow('sync/nightly');
  await scheduler.stop();
  const failed = state.get('sync/nightly', 0);
  assert.deepEqual([failed.lastState, failed.lastSummary], ['error', undefined]);
  state.close();
  store.close();
  await rm(dir, { recursive: true, force: true });
});
