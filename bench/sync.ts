/**
 * Replication benchmark (part of `npm run bench`): initial, incremental (about 1% of files changed, 5% of the
 * image rewritten) and no-change replication, local datastore to local datastore and server to server over
 * HTTPS on loopback, against `restic copy` of a restic repository of the same data and `rsync -a` + `sync`
 * and `rclone sync` of the ironcore datastore directory; the same over a TCP proxy adding 50 ms each way; a
 * --bwlimit run. Prints times, bytes moved, peak memory and ratios; asserts nothing.
 *
 * The initial and no-change steps run BENCH_REPEAT times (default 3) for every tool, each initial run into a
 * fresh target, all tools in turn within a round: the table gives the median and the range. One run each put
 * rsync at 1.81 s in one bench and 3.8-4.5 s by hand half an hour later, on the same data: single runs on this
 * VM moved the ratio more than any change did.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { buildCorpus, measure, median, repeat, root, settle, summary, work, type Run } from './common.ts';

const launcher = join(root, 'bin', 'ironcore-backup');
const MiB = 1024 * 1024;
/** Well below what the link carries unlimited, so the limiter (not the engine) sets the pace; about 30 s of data. */
const BWLIMIT = 8;

interface SyncRun extends Run {
  bytes: number;
  engineSeconds?: number;
}

function ibs(home: string, args: string[], env: Record<string, string> = {}): Promise<Run & { stdout: string }> {
  return new Promise((resolvePromise, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(launcher, args, { env: { ...process.env, IRONCORE_HOME: home, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peak = 0;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setInterval(() => {
      readFile(`/proc/${child.pid}/status`, 'utf8').then((s) => (peak = Math.max(peak, Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? 0) / 1024)), () => {});
    }, 20);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(timer);
      resolvePromise({ seconds: Number(process.hrtime.bigint() - start) / 1e9, peakRssMiB: peak, code: code ?? -1, stderr, stdout });
    });
  });
}

async function must(home: string, args: string[]): Promise<string> {
  const r = await ibs(home, args);
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** `sync run` in this process (no server at this home): wall time, engine time and bytes from the JSON result. */
async function syncRun(home: string, name: string): Promise<SyncRun> {
  await settle();
  const r = await ibs(home, ['sync', 'run', '--name', name, '--output', 'json', '--quiet']);
  if (r.code !== 0) throw new Error(`sync run ${name}: ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { bytesSent: number; seconds: number };
  return { ...r, bytes: j.bytesSent, engineSeconds: j.seconds };
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  return total;
}

/** Peer runs whose "bytes" is the growth of the destination directory (what had to be written). */
async function peer(cmd: string, args: string[], dst: string, env: Record<string, string> = {}): Promise<SyncRun> {
  const before = await dirBytes(dst).catch(() => 0);
  await settle();
  const r = await measure('bash', ['-c', `${[cmd, ...args].map((a) => `'${a}'`).join(' ')} && sync`], env);
  if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return { ...r, bytes: Math.max(0, (await dirBytes(dst)) - before) };
}

async function startServer(home: string, port: number): Promise<{ child: ChildProcess; fingerprint: string; peak: () => Promise<number> }> {
  const child = spawn(launcher, ['server', '--listen', '127.0.0.1', '--port', String(port)], { env: { ...process.env, IRONCORE_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 400 && !/certificate fingerprint: ([0-9a-f:]{95})/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
  const fingerprint = /certificate fingerprint: ([0-9a-f:]{95})/.exec(out)?.[1];
  if (!fingerprint) throw new Error(`server did not start: ${out}`);
  return { child, fingerprint, peak: async () => Number(/VmHWM:\s+(\d+)/.exec(await readFile(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024 };
}

/** A TCP proxy that delays every piece of data by `ms` in each direction, keeping order. */
function delayProxy(target: number, ms: number): Promise<{ port: number; close: () => void }> {
  const server = createServer((client: Socket) => {
    const upstream = connect(target, '127.0.0.1');
    const pipe = (from: Socket, to: Socket): void => {
      from.on('data', (d: Buffer) => void setTimeout(() => to.write(d), ms));
      from.on('end', () => setTimeout(() => to.end(), ms));
      from.on('error', () => to.destroy());
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ port: (server.address() as { port: number }).port, close: () => server.close() })));
}

/** Changes about 1% of the tree's files and rewrites 5% of the image in place. */
async function mutate(tree: string, image: string): Promise<void> {
  const files = (await readdir(tree, { withFileTypes: true, recursive: true })).filter((e) => e.isFile());
  for (let i = 0; i < files.length; i += 100) {
    const f = files[i] as (typeof files)[number];
    await writeFile(join(f.parentPath, f.name), `/* changed ${Date.now()} */\n`, { flag: 'a' });
  }
  const size = (await stat(image)).size;
  const h = await open(image, 'r+');
  const block = 4 * MiB;
  const blocks = Math.max(1, Math.round((size * 0.05) / block));
  for (let i = 0; i < blocks; i++) await h.write(randomBytes(block), 0, block, Math.floor(Math.random() * (size / block)) * block);
  await h.close();
}

type Summary = SyncRun & { range: string };

/** The median of a step's runs; the engine time is the median of theirs. */
function summarize(runs: SyncRun[]): Summary {
  const engines = runs.flatMap((r) => (r.engineSeconds === undefined ? [] : [r.engineSeconds]));
  const { engineSeconds: _engine, ...mid } = summary(runs);
  return engines.length > 0 ? { ...mid, engineSeconds: median(engines) } : mid;
}

const fmt = (r: (SyncRun & { range?: string }) | undefined): string =>
  r ? `${r.seconds.toFixed(2)} s${r.range ? ` [${r.range}]` : ''}${r.engineSeconds !== undefined ? ` (engine ${r.engineSeconds.toFixed(2)})` : ''}, ${(r.bytes / MiB).toFixed(1)} MiB, ${r.peakRssMiB.toFixed(0)} MiB RSS` : 'n/a';

async function main(): Promise<void> {
  const corpus = await buildCorpus();
  const base = join(work, 'sync');
  await rm(base, { recursive: true, force: true });
  const homeA = join(base, 'a');
  const homeB = join(base, 'b');
  console.log(`\nreplication bench: ${corpus.source}, ${(corpus.bytes / MiB).toFixed(0)} MiB corpus`);
  await must(homeA, ['datastore', 'create', 'src']);
  // Round r > 0 of the initial step copies into its own targets (suffix -rN); round 0's stay for the later steps.
  const rounds = Array.from({ length: repeat }, (_, r) => (r === 0 ? '' : `-r${r}`));
  for (const r of rounds) {
    await must(homeA, ['datastore', 'create', `local-copy${r}`]);
    await must(homeB, ['datastore', 'create', `dst${r}`]);
  }
  await must(homeB, ['datastore', 'create', 'dst-latency']);
  await must(homeB, ['datastore', 'create', 'dst-proxy']);
  await must(homeB, ['datastore', 'create', 'dst-bwlimit']);
  const backup = (id: string): Promise<string> => must(homeA, ['backup', 'create', '--quiet', '--store', 'src', '--id', id, `root.tar:${corpus.tree}`, `disk.img:${corpus.image}`]);
  await backup('bench');
  const srcDir = join(homeA, 'data', 'src');

  // Server B receives pushes over HTTPS; A runs the jobs in-process (engine time is reported apart from process start).
  const portB = 18000 + Math.floor(Math.random() * 1000);
  const b = await startServer(homeB, portB);
  const proxy = await delayProxy(portB, 50);
  // The same proxy with nothing added: its own cost (a third process copying every byte, on the same cores) is
  // not latency, so the latency target is also read against it.
  const proxy0 = await delayProxy(portB, 0);
  try {
    await must(homeB, ['user', 'create', 'push@ibs']);
    const token = JSON.parse(await must(homeB, ['token', 'create', 'push@ibs!bench', '--output', 'json'])) as { secret: string };
    for (const id of ['push@ibs', 'push@ibs!bench']) await must(homeB, ['acl', 'update', '/', 'DatastoreAdmin', '--auth-id', id]);
    const secret = join(base, 'secret');
    await writeFile(secret, `${token.secret}\n`, { mode: 0o600 });
    for (const [name, port] of [['site-b', portB], ['site-b-50ms', proxy.port], ['site-b-proxy', proxy0.port]] as const) {
      await must(homeA, ['remote', 'create', name, '--host', '127.0.0.1', '--port', String(port), '--auth-id', 'push@ibs!bench', '--secret-file', secret, '--fingerprint', b.fingerprint]);
    }
    for (const r of rounds) {
      await must(homeA, ['sync', 'create', '--name', `local${r}`, '--store', 'src', '--remote-store', `local-copy${r}`, '--direction', 'push']);
      await must(homeA, ['sync', 'create', '--name', `https${r}`, '--store', 'src', '--remote', 'site-b', '--remote-store', `dst${r}`, '--direction', 'push']);
    }
    await must(homeA, ['sync', 'create', '--name', 'latency', '--store', 'src', '--remote', 'site-b-50ms', '--remote-store', 'dst-latency', '--direction', 'push']);
    await must(homeA, ['sync', 'create', '--name', 'proxy', '--store', 'src', '--remote', 'site-b-proxy', '--remote-store', 'dst-proxy', '--direction', 'push']);
    await must(homeA, ['sync', 'create', '--name', 'bwlimit', '--store', 'src', '--remote', 'site-b', '--remote-store', 'dst-bwlimit', '--direction', 'push', '--bwlimit', String(BWLIMIT), '--transfer-last', '1']);

    const runs: Record<string, Record<string, SyncRun[]>> = { initial: {}, incremental: {}, 'no change': {} };
    const peers = { rsync: join(base, 'rsync-copy'), rclone: join(base, 'rclone-copy') };
    const have = async (cmd: string): Promise<boolean> => (await measure('bash', ['-c', `command -v ${cmd}`])).code === 0;
    const haveRsync = await have('rsync');
    const haveRclone = await have('rclone');
    const haveRestic = await have('restic');
    const renv = (repo: string): Record<string, string> => ({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: join(base, 'restic-cache') });
    const repo1 = join(base, 'restic-1');
    const repo2 = join(base, 'restic-2');
    if (haveRestic) {
      await measure('restic', ['--quiet', 'init'], renv(repo1));
      await measure('restic', ['--quiet', 'backup', corpus.tree, corpus.image], renv(repo1));
      for (const r of rounds) await measure('restic', ['--quiet', 'init', '--from-repo', repo1, '--copy-chunker-params'], { ...renv(repo2 + r), RESTIC_FROM_PASSWORD: 'bench' });
    }
    /** One run of every tool, in turn, into the targets of round `r`. */
    const step = async (label: string, r = ''): Promise<void> => {
      const row = runs[label] as Record<string, SyncRun[]>;
      const add = (tool: string, run: SyncRun): void => void (row[tool] ??= []).push(run);
      add('local', await syncRun(homeA, `local${r}`));
      add('https', await syncRun(homeA, `https${r}`));
      if (haveRsync) add('rsync', await peer('rsync', ['-a', '--delete', `${srcDir}/`, `${peers.rsync}${r}/`], peers.rsync + r));
      if (haveRclone) add('rclone', await peer('rclone', ['sync', '--links', `${srcDir}/`, `${peers.rclone}${r}/`], peers.rclone + r));
      if (haveRestic) add('restic copy', await peer('restic', ['--quiet', 'copy', '--from-repo', repo1], repo2 + r, { ...renv(repo2 + r), RESTIC_FROM_PASSWORD: 'bench' }));
    };
    for (const r of rounds) await step('initial', r);
    // The copies of rounds after the first are not needed any more: removed now (about 3 GB each), not between
    // the rounds, so that no round writes into space the one before it freed moments ago.
    for (const r of rounds.slice(1)) {
      await must(homeA, ['sync', 'remove', '--name', `local${r}`]);
      await must(homeA, ['sync', 'remove', '--name', `https${r}`]);
      await must(homeA, ['datastore', 'remove', `local-copy${r}`, '--destroy-data']);
      await must(homeB, ['datastore', 'remove', `dst${r}`, '--destroy-data']);
      for (const dir of [peers.rsync + r, peers.rclone + r, repo2 + r]) await rm(dir, { recursive: true, force: true });
    }
    await mutate(corpus.tree, corpus.image);
    await backup('bench');
    if (haveRestic) await measure('restic', ['--quiet', 'backup', corpus.tree, corpus.image], renv(repo1));
    await step('incremental');
    for (let i = 0; i < repeat; i++) await step('no change');
    const rows = Object.fromEntries(Object.entries(runs).map(([label, byTool]) => [label, Object.fromEntries(Object.entries(byTool).map(([tool, list]) => [tool, summarize(list)]))])) as Record<string, Record<string, Summary | undefined>>;

    const proxied = await syncRun(homeA, 'proxy');
    const latency = await syncRun(homeA, 'latency');
    const bw = await syncRun(homeA, 'bwlimit');
    const serverPeak = await b.peak();

    const cols = ['local', 'https', 'rsync', 'rclone', 'restic copy'];
    console.log(`\ninitial and no change: median of ${repeat} run(s) each, range in brackets; incremental: one run`);
    console.log(`${'step'.padEnd(12)} ${cols.map((c) => c.padEnd(58)).join(' ')}`);
    for (const [label, row] of Object.entries(rows)) console.log(`${label.padEnd(12)} ${cols.map((c) => fmt(row[c]).padEnd(58)).join(' ')}`);
    const init = rows.initial as Record<string, Summary | undefined>;
    const ratio = (a?: SyncRun, c?: SyncRun): string => (a && c ? `${(a.seconds / c.seconds).toFixed(2)}x` : 'n/a');
    console.log(`\ninitial, ours / rsync wall time: local ${ratio(init.local, init.rsync)}, https ${ratio(init.https, init.rsync)} (target <= 2x)`);
    console.log(`initial, restic copy / ours: local ${ratio(init['restic copy'], init.local)}, https ${ratio(init['restic copy'], init.https)} (target >= 10x)`);
    const inc = rows.incremental as Record<string, Summary | undefined>;
    const none = rows['no change'] as Record<string, Summary | undefined>;
    console.log(`incremental: local ${inc.local?.seconds.toFixed(2)} s, https ${inc.https?.seconds.toFixed(2)} s (target <= 1 s)`);
    console.log(`no change: local ${none.local?.seconds.toFixed(2)} s (engine ${none.local?.engineSeconds?.toFixed(2)}; target <= 0.3), https ${none.https?.seconds.toFixed(2)} s (engine ${none.https?.engineSeconds?.toFixed(2)}; target <= 0.5)`);
    const thr = (r?: SyncRun): number => (r && r.engineSeconds ? r.bytes / r.engineSeconds : 0);
    // The latency run copies both snapshots; its throughput is compared with the no-latency initial run.
    const share = (r: SyncRun): string => `${((thr(latency) / Math.max(1, thr(r))) * 100).toFixed(0)}%`;
    console.log(`50 ms each way: ${fmt(latency)}; throughput ${(thr(latency) / MiB).toFixed(1)} MiB/s vs ${(thr(init.https) / MiB).toFixed(1)} MiB/s direct (${share(init.https as SyncRun)}) and ${(thr(proxied) / MiB).toFixed(1)} MiB/s through the proxy with 0 ms added (${share(proxied)}); target >= 70%`);
    console.log(`--bwlimit ${BWLIMIT}: ${fmt(bw)}; ${(thr(bw) / MiB).toFixed(2)} MiB/s over ${bw.engineSeconds?.toFixed(1)} s (${(((thr(bw) / MiB - BWLIMIT) / BWLIMIT) * 100).toFixed(1)}% off, target within ±5%)`);
    console.log(`peak RSS: sync process ${Math.max(...Object.values(rows).flatMap((r) => [r.local?.peakRssMiB ?? 0, r.https?.peakRssMiB ?? 0]), latency.peakRssMiB, bw.peakRssMiB).toFixed(0)} MiB, receiving server ${serverPeak.toFixed(0)} MiB (target <= 300)`);
  } finally {
    proxy.close();
    proxy0.close();
    b.child.kill('SIGTERM');
  }
}

await main();
