/**
 * Replication under faults, for real: kill -9 of the source or the target server at random points of a push,
 * and a TCP proxy between the servers that cuts, stalls and resets connections mid-transfer. The target
 * never shows a partial snapshot (every listed snapshot verifies), and the next run completes, sending about
 * what was missing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { freePort, ibs, startIbs, startServer, tempDir, type ServerProcess } from './helpers.ts';

let work: { path: string; cleanup: () => Promise<void> };
let homeA: string;
let homeB: string;
let portA: number;
let portB: number;
let a: ServerProcess;
let b: ServerProcess;
let src: string;
const ENV = { IBS_LINK_IDLE_TIMEOUT_MS: '2000' };

const ok = async (home: string, args: string[]): Promise<string> => {
  const r = await ibs(home, args);
  assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
};
const json = async <T = unknown>(home: string, args: string[]): Promise<T> => JSON.parse(await ok(home, [...args, '--output', 'json'])) as T;

let counter = 0;
async function newBackup(mib: number): Promise<void> {
  await writeFile(join(src, 'data.bin'), randomBytes(mib * 1024 * 1024));
  const time = new Date(Date.UTC(2026, 10, 1) + counter++ * 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
  await ok(homeA, ['backup', 'create', '--store', 'primary', '--id', `h${counter % 3}`, '--time', time, `root.tar:${src}`]);
}

async function chunkFiles(store: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const root = join(store, '.chunks');
  for (const d of await readdir(root).catch(() => [])) {
    for (const f of await readdir(join(root, d))) if (/^[0-9a-f]{64}$/.test(f)) out.set(f, (await stat(join(root, d, f))).size);
  }
  return out;
}

before(async () => {
  work = await tempDir('ibs-faults-');
  homeA = join(work.path, 'a');
  homeB = join(work.path, 'b');
  src = join(work.path, 'src');
  await mkdir(src, { recursive: true });
  await ok(homeA, ['datastore', 'create', 'primary']);
  await ok(homeB, ['datastore', 'create', 'archive']);
  [portA, portB] = [await freePort(), await freePort()];
  a = await startServer(homeA, portA, ENV);
  b = await startServer(homeB, portB, ENV);
  await ok(homeB, ['user', 'create', 'push@ibs']);
  const t = await json<{ secret: string }>(homeB, ['token', 'create', 'push@ibs!repl']);
  for (const id of ['push@ibs', 'push@ibs!repl']) await ok(homeB, ['acl', 'update', '/datastore/archive', 'DatastoreAdmin', '--auth-id', id]);
  await writeFile(join(work.path, 'secret'), `${t.secret}\n`, { mode: 0o600 });
  await ok(homeA, ['remote', 'create', 'site-b', '--host', '127.0.0.1', '--port', String(portB), '--auth-id', 'push@ibs!repl', '--secret-file', join(work.path, 'secret'), '--fingerprint', b.fingerprint]);
  await ok(homeA, ['sync', 'create', '--name', 'push', '--store', 'primary', '--remote', 'site-b', '--remote-store', 'archive', '--direction', 'push', '--bwlimit', '6']);
});

after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await work.cleanup();
});

test('kill -9 of the source or the target at 20 random points: never a partial snapshot; the next run completes and sends about what was missing', { timeout: 300_000 }, async () => {
  const storeB = join(homeB, 'data', 'archive');
  for (let i = 0; i < 20; i++) {
    await newBackup(3);
    // Through the running server (a task); the kill lands once the task is under way.
    const child = startIbs(homeA, ['sync', 'run', '--name', 'push']);
    let out = '';
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const run = new Promise<number>((r) => child.on('close', (code) => r(code ?? -1)));
    for (let t = 0; t < 200 && !/starting task/.test(out) && child.exitCode === null; t++) await new Promise((r) => setTimeout(r, 25));
    await new Promise((r) => setTimeout(r, 50 + Math.floor(Math.random() * 1200)));
    const victimIsTarget = i % 2 === 0;
    if (victimIsTarget) {
      await b.kill();
      b = await startServer(homeB, portB, ENV);
    } else {
      await a.kill();
      a = await startServer(homeA, portA, ENV);
    }
    const guard = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const code = await run;
    clearTimeout(guard);
    assert.notEqual(child.signalCode, 'SIGKILL', `sync run hung after kill ${i}:\n${out}`);
    console.log(`kill ${i} (${victimIsTarget ? 'target' : 'source'}): sync run exit ${code}: ${out.split('\n').filter((l) => /TASK|Error|summary/.test(l)).join(' | ').slice(0, 300)}`);
    // Whatever the target lists is complete: every snapshot verifies.
    const v = await ibs(homeB, ['verify', 'start', 'archive']);
    assert.equal(v.code, 0, `after kill ${i} (${victimIsTarget ? 'target' : 'source'}): ${v.stderr}`);
  }
  // What the target still lacks, then one uninterrupted run.
  const needed = new Map<string, number>();
  const have = await chunkFiles(storeB);
  for (const [digest, size] of await chunkFiles(join(homeA, 'data', 'primary'))) if (!have.has(digest)) needed.set(digest, size);
  const missingBytes = [...needed.values()].reduce((x, y) => x + y, 0);
  const final = await json<{ summary: string }>(homeA, ['sync', 'run', '--name', 'push']);
  const sent = /in (\d+) chunks/.exec(final.summary);
  assert.ok(sent, final.summary);
  assert.ok(Number(sent[1]) <= needed.size + 8, `sent ${sent[1]} chunks, ${needed.size} (${missingBytes} bytes) were missing: ${final.summary}`);
  const onA = (await json<Array<{ snapshot: string }>>(homeA, ['snapshot', 'list', 'primary'])).map((s) => s.snapshot).sort();
  const onB = (await json<Array<{ snapshot: string }>>(homeB, ['snapshot', 'list', 'archive'])).map((s) => s.snapshot).sort();
  assert.deepEqual(onB, onA);
  assert.equal((await ibs(homeB, ['verify', 'start', 'archive'])).code, 0);
  const diff = await ibs(homeA, ['sync', 'diff', '--name', 'push']);
  assert.equal(diff.code, 0, diff.stdout);
});

/** A TCP proxy whose behaviour the test switches: pass, cut after some bytes, stall, reset. */
function proxy(target: number): { server: Server; port: () => number; mode: { kind: 'pass' | 'cut' | 'stall' | 'reset'; after: number } } {
  const mode = { kind: 'pass' as 'pass' | 'cut' | 'stall' | 'reset', after: 0 };
  const server = createServer((client: Socket) => {
    const upstream = connect(target, '127.0.0.1');
    let bytes = 0;
    const fault = (): boolean => {
      if (mode.kind === 'pass' || bytes < mode.after) return false;
      if (mode.kind === 'cut') {
        client.destroy();
        upstream.destroy();
      } else if (mode.kind === 'reset') {
        client.resetAndDestroy();
        upstream.destroy();
      }
      return true; // stall: keep the sockets, drop the data
    };
    const pipe = (from: Socket, to: Socket): void => {
      from.on('data', (d: Buffer) => {
        bytes += d.length;
        if (!fault()) to.write(d);
      });
      from.on('error', () => to.destroy());
      from.on('close', () => to.destroy());
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  server.listen(0, '127.0.0.1');
  return { server, port: () => (server.address() as { port: number }).port, mode };
}

test('a proxy that cuts, stalls and resets connections mid-transfer: the job retries and completes, or fails clearly and completes next run', { timeout: 300_000 }, async () => {
  const p = proxy(portB);
  await new Promise((r) => p.server.once('listening', r));
  try {
    await ok(homeA, ['remote', 'create', 'site-b-proxied', '--host', '127.0.0.1', '--port', String(p.port()), '--auth-id', 'push@ibs!repl', '--secret-file', join(work.path, 'secret'), '--fingerprint', b.fingerprint]);
    await ok(homeA, ['sync', 'create', '--name', 'proxied', '--store', 'primary', '--remote', 'site-b-proxied', '--remote-store', 'archive', '--direction', 'push', '--remote-ns', 'proxied']);
    await ok(homeB, ['namespace', 'create', 'archive', 'proxied']);
    for (const kind of ['cut', 'stall', 'reset'] as const) {
      await newBackup(8);
      Object.assign(p.mode, { kind, after: 3 * 1024 * 1024 });
      // Faults on every connection for a while, then the link heals.
      const heal = setTimeout(() => Object.assign(p.mode, { kind: 'pass' }), kind === 'stall' ? 5000 : 1500);
      const first = await ibs(homeA, ['sync', 'run', '--name', 'proxied']);
      clearTimeout(heal);
      Object.assign(p.mode, { kind: 'pass' });
      // A run that gives up says why: the link (closed, reset, stalled, unreachable) or the lost session.
      if (first.code !== 0) assert.match(first.stderr, /connection|stalled|reset|Cannot reach|No backup session|No reader session/i, first.stderr);
      const v = await ibs(homeB, ['verify', 'start', 'archive']);
      assert.equal(v.code, 0, `${kind}: ${v.stderr}`);
      const second = await ibs(homeA, ['sync', 'run', '--name', 'proxied']);
      assert.equal(second.code, 0, `${kind}: ${second.stderr}`);
      const diff = await ibs(homeA, ['sync', 'diff', '--name', 'proxied']);
      assert.equal(diff.code, 0, `${kind}: ${diff.stdout}`);
    }
  } finally {
    p.server.close();
  }
});

/** A TCP proxy that forwards at most `bytesPerSecond` each way, as a slow link would. */
function pacedProxy(target: number, bytesPerSecond: number): { server: Server; port: () => number } {
  const pace = (from: Socket, to: Socket): void => {
    const queue: Buffer[] = [];
    let budget = 0;
    let last = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const pump = (): void => {
      timer = undefined;
      const now = Date.now();
      budget = Math.min(bytesPerSecond / 20, budget + ((now - last) / 1000) * bytesPerSecond);
      last = now;
      while (queue.length > 0 && budget >= 1) {
        const head = queue[0] as Buffer;
        const n = Math.min(head.length, Math.floor(budget));
        to.write(head.subarray(0, n));
        budget -= n;
        if (n === head.length) queue.shift();
        else queue[0] = head.subarray(n);
      }
      // What waits here is not read from the socket meanwhile: the sender's kernel holds the rest, as on a real link.
      if (queue.length > 0) {
        from.pause();
        timer = setTimeout(pump, 10);
      } else from.resume();
    };
    from.on('data', (d: Buffer) => {
      queue.push(d);
      if (!timer) pump();
    });
    from.on('error', () => to.destroy());
    from.on('close', () => {
      clearTimeout(timer);
      to.destroy();
    });
  };
  const server = createServer((client: Socket) => {
    const upstream = connect(target, '127.0.0.1');
    pace(client, upstream);
    pace(upstream, client);
  });
  server.listen(0, '127.0.0.1');
  return { server, port: () => (server.address() as { port: number }).port };
}

test('a slow link is not taken for a stalled one: 40 MiB in 4 groups pushed in parallel through a 6 MiB/s link with a 2 s idle time, then pulled back, go once, without a stall', { timeout: 120_000 }, async () => {
  const p = pacedProxy(portB, 6 * 1024 * 1024);
  await new Promise((r) => p.server.once('listening', r));
  try {
    await ok(homeA, ['datastore', 'create', 'large']);
    await ok(homeB, ['datastore', 'create', 'slow']);
    for (const id of ['push@ibs', 'push@ibs!repl']) await ok(homeB, ['acl', 'update', '/datastore/slow', 'DatastoreAdmin', '--auth-id', id]);
    for (let i = 0; i < 4; i++) {
      const dir = join(work.path, `large${i}`);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'data.bin'), randomBytes(10 * 1024 * 1024));
      await ok(homeA, ['backup', 'create', '--store', 'large', '--id', `large${i}`, `root.tar:${dir}`]);
    }
    await ok(homeA, ['remote', 'create', 'site-b-slow', '--host', '127.0.0.1', '--port', String(p.port()), '--auth-id', 'push@ibs!repl', '--secret-file', join(work.path, 'secret'), '--fingerprint', b.fingerprint]);
    await ok(homeA, ['sync', 'create', '--name', 'slow', '--store', 'large', '--remote', 'site-b-slow', '--remote-store', 'slow', '--direction', 'push', '--worker-threads', '4']);
    /** Runs a job that must move the 40 MiB once, without a stall, leaving `store` on `home` verified. */
    const once = async (job: string, home: string, store: string): Promise<void> => {
      const r = await ibs(homeA, ['sync', 'run', '--name', job]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(`${r.stdout}\n${r.stderr}`, /stalled|trying again/, `${r.stdout}\n${r.stderr}`);
      const moved = /transferred ([\d.]+) MiB/.exec(r.stdout);
      assert.ok(moved && Number(moved[1]) < 41, `${job} moved more than the snapshots hold: ${r.stdout}`);
      assert.equal((await ibs(home, ['verify', 'start', store])).code, 0);
    };
    // All of it in flight at once (10 batches of 4 MiB per group) would take 7 s to drain, and each request
    // would see nothing for that long; one batch per group, 2.7 s.
    await once('slow', homeB, 'slow');
    // And back: a pull through the same link, where the server queues its answers.
    await ok(homeA, ['datastore', 'create', 'pulled']);
    await ok(homeA, ['sync', 'create', '--name', 'slow-pull', '--store', 'pulled', '--remote', 'site-b-slow', '--remote-store', 'slow', '--direction', 'pull', '--worker-threads', '4']);
    await once('slow-pull', homeA, 'pulled');
  } finally {
    p.server.close();
  }
});
