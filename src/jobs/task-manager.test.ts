import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { IbsError } from '../core/index.ts';
import { TaskManager } from './task-manager.ts';
import { TaskStore } from './task-store.ts';
import { formatUpid, parseUpid } from './upid.ts';

async function withManager(fn: (m: TaskManager, dir: string) => Promise<void>, slots: Record<string, number> = {}): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-tasks-'));
  const store = await TaskStore.open(dir);
  try {
    await fn(await TaskManager.start({ store, node: 'node1', slots }), dir);
  } finally {
    store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const spec = { type: 'verify', id: 'store1', authId: 'root@pam' };
const lastLine = (text: string): string => text.trimEnd().split('\n').at(-1)?.replace(/^\S+: /, '') ?? '';

test('UPIDs round-trip, escape their id and refuse malformed text', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), fc.nat(), (id, n) => {
      const u = { node: 'host-1', pid: 4242, pstart: 77, counter: n % 1000, starttime: 1_795_312_868, type: 'backup', id, authId: 'root@pam' };
      const text = formatUpid(u);
      assert.ok(!/\s/.test(text) && text.split(':').length === 10);
      assert.deepEqual(parseUpid(text), u);
    }),
  );
  assert.throws(() => parseUpid('UPID:../../etc:1:2:3:4:x:y:z:'), IbsError);
  // Task types with underscores (garbage_collection) parse too.
  const gc = formatUpid({ node: 'n', pid: 1, pstart: 2, counter: 3, starttime: 4, type: 'garbage_collection', id: 'store1', authId: 'admin@ibs' });
  assert.equal(parseUpid(gc).type, 'garbage_collection');
});

test('a task ends with TASK OK, TASK WARNINGS: n or TASK ERROR, in its log and in the index', async () => {
  await withManager(async (m) => {
    const ok = m.spawn(spec, async (t) => t.log('working'));
    const warned = m.spawn(spec, async (t) => {
      t.warn('one');
      t.warn('two');
    });
    const failed = m.spawn(spec, async () => {
      throw new IbsError('CORRUPT', 'chunk abc is damaged');
    });
    assert.equal((await ok.done).state, 'ok');
    assert.equal((await warned.done).state, 'warnings');
    assert.equal((await failed.done).status, 'chunk abc is damaged');
    assert.equal(lastLine((await m.store.readLog(ok.upid)).text), 'TASK OK');
    assert.match((await m.store.readLog(ok.upid)).text, /working/);
    assert.equal(lastLine((await m.store.readLog(warned.upid)).text), 'TASK WARNINGS: 2');
    assert.equal(lastLine((await m.store.readLog(failed.upid)).text), 'TASK ERROR: chunk abc is damaged');
    assert.deepEqual(m.list({ state: 'error' }).map((t) => t.upid), [failed.upid]);
    assert.equal(m.list({ type: 'verify' }).length, 3);
    assert.equal(m.store.get(warned.upid).status, 'WARNINGS: 2');
  });
});

test('tasks beyond the slots of their type wait in order; abort stops a running and a queued task', async () => {
  await withManager(async (m) => {
    const order: string[] = [];
    const gates: Array<() => void> = [];
    const make = (name: string) =>
      m.spawn({ ...spec, id: name }, async (t) => {
        order.push(name);
        await new Promise<void>((resolve, reject) => {
          gates.push(resolve);
          t.signal.addEventListener('abort', () => reject(t.signal.reason), { once: true });
        });
      });
    const a = make('a');
    const b = make('b');
    const c = make('c');
    const d = make('d');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(order, ['a']);
    assert.deepEqual(m.workerStatus(), [{ type: 'verify', slots: 1, running: 1, queued: 3 }]);
    assert.equal(m.status(b.upid).state, 'queued');
    assert.ok(m.abort(c.upid));
    gates[0]?.();
    await a.done;
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(order, ['a', 'b']);
    assert.ok(m.abort(b.upid, 'stopped by test'));
    const bDone = await b.done;
    assert.equal(bDone.state, 'aborted');
    assert.match(lastLine((await m.store.readLog(b.upid)).text), /^TASK ERROR: aborted: stopped by test$/);
    assert.equal((await c.done).state, 'aborted');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(order, ['a', 'b', 'd']);
    gates.at(-1)?.();
    assert.equal((await d.done).state, 'ok');
  }, { verify: 1 });
});

test('shutdown aborts running tasks and records them as aborted; new tasks are refused', async () => {
  await withManager(async (m) => {
    const t = m.spawn(spec, (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))));
    await new Promise((r) => setTimeout(r, 30));
    await m.shutdown('server stopping');
    assert.equal(m.store.get(t.upid).state, 'aborted');
    assert.match(m.store.get(t.upid).status ?? '', /server stopping/);
    assert.throws(() => m.spawn(spec, async () => {}), (e) => e instanceof IbsError && e.code === 'UNAVAILABLE');
  });
});

test('a task left running by a process that died is marked failed at the next start', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-tasks-'));
  try {
    const store = await TaskStore.open(dir);
    const dead = { node: 'node1', pid: 999_999, pstart: 1, counter: 1, starttime: Math.floor(Date.now() / 1000), type: 'backup', id: 'x', authId: 'root@pam' };
    const upid = formatUpid(dead);
    store.create(dead, upid, 'running');
    await store.appendLog(upid, 'started\n');
    store.close();
    const reopened = await TaskStore.open(dir);
    await TaskManager.start({ store: reopened, node: 'node1' });
    assert.equal(reopened.get(upid).state, 'error');
    assert.equal(reopened.get(upid).status, 'server stopped unexpectedly');
    assert.equal(lastLine((await reopened.readLog(upid)).text), 'TASK ERROR: server stopped unexpectedly');
    reopened.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('follow() yields the log as it grows and ends with the task', async () => {
  await withManager(async (m) => {
    const t = m.spawn(spec, async (ctx) => {
      for (let i = 0; i < 3; i++) {
        ctx.log(`step ${i}`);
        await new Promise((r) => setTimeout(r, 60));
      }
    });
    let text = '';
    for await (const piece of m.follow(t.upid, { intervalMs: 20 })) text += piece;
    assert.match(text, /step 0[\s\S]*step 2[\s\S]*TASK OK/);
  });
});

test('a log read from an offset gives what follows it and where to go on; read in steps it is the whole log', async () => {
  await withManager(async (m) => {
    const t = m.spawn(spec, async (task) => {
      for (let i = 0; i < 500; i++) task.log(`line ${i} ${'é'.repeat(i % 7)}`);
    });
    await t.done;
    const whole = await m.store.readLog(t.upid);
    assert.equal(whole.size, Buffer.byteLength(whole.text));
    let text = '';
    let offset = 0;
    for (const step of [0, 100, 3000, 17, 100_000]) {
      const part = await m.store.readLog(t.upid, { start: offset });
      // Read up to a line end at each step, as a follower does while lines are appended whole.
      const cut = Math.min(part.text.length, part.text.indexOf('\n', step) + 1 || part.text.length);
      text += part.text.slice(0, cut);
      offset += Buffer.byteLength(part.text.slice(0, cut));
    }
    assert.equal(text, whole.text);
    assert.deepEqual(await m.store.readLog(t.upid, { start: whole.size }), { text: '', size: whole.size });
    assert.deepEqual(await m.store.readLog(t.upid, { start: whole.size + 10 }), { text: '', size: whole.size });
  });
});
