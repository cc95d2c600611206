import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobStateStore } from './job-state.ts';
import { openStateDatabase } from './state-db.ts';
import { TaskStore } from './task-store.ts';
import { UploadLedger } from './upload-ledger.ts';

test('a damaged state database is moved aside (kept for inspection) and a new one made: the server still starts', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-state-db-'));
  try {
    const garbage = Buffer.alloc(4096, 0x5a);
    for (const name of ['tasks.db', 'jobs.db', 'uploads.db']) await writeFile(join(dir, name), garbage);
    const warnings: string[] = [];
    const stderr = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (warnings.push(String(chunk)), true)) as typeof process.stderr.write;
    let tasks: TaskStore;
    let jobs: JobStateStore;
    let uploads: UploadLedger;
    try {
      tasks = await TaskStore.open(dir);
      jobs = new JobStateStore(dir);
      uploads = new UploadLedger(dir);
    } finally {
      process.stderr.write = stderr;
    }
    // Each works as new.
    assert.deepEqual(tasks.list({}), []);
    assert.equal(jobs.get('sync/x', 5).firstSeen, 5);
    uploads.remember('a@pbs', 's', ['d1']);
    tasks.close();
    jobs.close();
    uploads.close();
    assert.equal(warnings.length, 3);
    for (const w of warnings) assert.match(w, /\.db does not read \(file is not a database\): moved aside to .*\.db\.damaged-.*, and a new one made/);
    const aside = (await readdir(dir)).filter((n) => /\.damaged-/.test(n)).sort();
    assert.deepEqual(aside.map((n) => n.replace(/\.damaged-.*/, '')), ['jobs.db', 'tasks.db', 'uploads.db']);
    assert.deepEqual(await readFile(join(dir, aside[0] as string)), garbage, 'the damaged file is kept as it was');
    // Any other failure is not taken for damage: it stands.
    assert.throws(() => openStateDatabase(join(dir, 'other.db'), 'CREATE TABLE nonsense ('), /syntax error|incomplete input/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
