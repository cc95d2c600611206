import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { windowShare } from '../src/app/index.ts';
import { LocalApiClient } from '../src/client/index.ts';
import { ibs, startServer, tempDir } from './helpers.ts';

/** Runs a command that must succeed; returns its output. */
function succeeding(home: string): (args: string[]) => Promise<string> {
  return async (args) => {
    const r = await ibs(home, args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
}

/**
 * A home of its own for one test, with a folder `data` holding one small file to back up: `must` runs commands
 * that must succeed; a server started with `serve` is stopped at the end (or by `stop`), and everything removed.
 */
async function inHome(prefix: string, fn: (h: { data: string; home: string; must: (args: string[]) => Promise<string>; serve: () => Promise<void>; stop: () => Promise<void> }) => Promise<void>): Promise<void> {
  const dir = await tempDir(prefix);
  const home = join(dir.path, 'home');
  const data = join(dir.path, 'data');
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  const stop = async (): Promise<void> => {
    await server?.stop();
    server = undefined;
  };
  try {
    await mkdir(data, { recursive: true });
    await writeFile(join(data, 'a.txt'), 'some data\n');
    await fn({ data, home, must: succeeding(home), serve: async () => void (server = await startServer(home)), stop });
  } finally {
    await stop();
    await dir.cleanup();
  }
}

test('a run of a schedule stands for its share of the window', () => {
  const from = Date.parse('2026-12-07T12:00:00Z');
  assert.equal(windowShare('daily', 7, from), 1 / 7);
  assert.equal(windowShare('hourly', 1, from), 1 / 24);
  // A window shorter than the schedule's interval: each run takes everything due.
  assert.equal(windowShare('Sat 02:00', 3, from), 1);
});

test('verify window (the troubleshooting page\'s --verify-window-days): due snapshots are verified by the job; an outgrown window is named with its fixes', async () => {
  await inHome('ibs-window-', async ({ data, home, must, serve }) => {
    await must(['datastore', 'create', 'ibs-primary']);
    const ago = (days: number): string => new Date(Date.now() - days * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
    // Two backups ten days old, never verified (due in a 7-day window), and a new one (due within the window).
    for (const [id, time] of [['old1', ago(10)], ['old2', ago(10)], ['new', ago(0.01)]] as const) {
      await must(['backup', 'create', '--quiet', '--store', 'ibs-primary', '--id', id, '--time', time, `root.tar:${data}`]);
    }

    // Bad input: one clear line, nothing stored.
    for (const [args, message] of [
      [['--verify-window-days', '0'], /Invalid verify-window-days 0: expected a whole number of days from 1 to 3650/],
      [['--verify-window-days', 'week'], /Invalid --verify-window-days "week"/],
      [['--verify-window-days', '7', '--ignore-verified'], /verify-window-days replaces ignore-verified and outdated-after/],
    ] as const) {
      const r = await ibs(home, ['verify', 'job', 'create', 'bad', '--store', 'ibs-primary', '--schedule', 'daily', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    }
    await must(['verify', 'job', 'create', 'weekly-window', '--store', 'ibs-primary', '--schedule', 'daily', '--verify-window-days', '7']);
    const config = await readFile(join(home, 'etc', 'verification.cfg'), 'utf8');
    assert.match(config, /verify-window-days 7/);
    assert.doesNotMatch(config, /bad/);
    for (const [args, message] of [
      [['--delete', 'schedule'], /Invalid --delete "schedule": expected one of verify-window-days, /],
      [['--ignore-verified'], /verify-window-days replaces ignore-verified/],
      [[], /Nothing to change/],
      // The datastore and namespace of a job do not change: --ns is not taken and silently dropped.
      [['--ns', 'other', '--comment', 'x'], /Unknown option '--ns'/],
    ] as const) {
      const r = await ibs(home, ['verify', 'job', 'update', 'weekly-window', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    }
    assert.equal(await readFile(join(home, 'etc', 'verification.cfg'), 'utf8'), config);

    type Status = { datastores?: Array<{ error?: string }>; jobs: Array<{ job: string; window?: string; overdue?: number; lastState?: string }>; notes: string[] };
    const status = async (): Promise<Status> => JSON.parse(await must(['verify', 'status', '--output', 'json'])) as Status;
    let s = await status();
    assert.deepEqual([s.jobs[0]?.window, s.jobs[0]?.overdue], ['7 days', 2]);
    assert.deepEqual(s.notes, [], 'before its first run, nothing is said about the window');

    // Run by the server, as a task: the two due ones and, for its share (1 run in 7), no other.
    await serve();
    const ran = await ibs(home, ['verify', 'job', 'run', 'weekly-window']);
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(ran.stdout, /task: UPID:/);
    assert.match(ran.stderr, /window of 7 day\(s\), 7 run\(s\) in it: verified 2 of 3 snapshot\(s\)/);
    const listed = JSON.parse(await must(['snapshot', 'list', 'ibs-primary', '--output', 'json'])) as Array<{ snapshot: string; verifyState?: string }>;
    assert.deepEqual(listed.map((l) => [l.snapshot.split('/')[1], l.verifyState ?? 'none']).sort(), [['new', 'none'], ['old1', 'ok'], ['old2', 'ok']]);
    s = await status();
    assert.deepEqual([s.jobs[0]?.overdue, s.jobs[0]?.lastState], [0, 'ok']);
    assert.deepEqual(s.notes, []);

    // A backup older than the window arrives (say, a pulled copy): it is overdue, and the status says what to do.
    await must(['backup', 'create', '--quiet', '--store', 'ibs-primary', '--id', 'late', '--time', ago(9), `root.tar:${data}`]);
    s = await status();
    assert.equal(s.jobs[0]?.overdue, 1);
    assert.match(s.notes.join('\n'), /verify\/weekly-window: 1 snapshot\(s\) of ibs-primary not verified within its 7-day window: the datastore has outgrown it\. Increase it \(verify job update weekly-window --verify-window-days N\), run the job more often \(--schedule\) or with more snapshots at once \(--max-concurrent-snapshots\)/);
    assert.match(await must(['verify', 'status']), /WINDOW +OVERDUE[\s\S]*7 days +1[\s\S]*outgrown/);
    // The API gives the note too (a dashboard shows what the command shows).
    const api = (await new LocalApiClient(join(home, 'lib', 'api.sock')).request('GET', '/admin/verify')) as Status;
    assert.deepEqual(api.notes, s.notes);
    assert.equal(api.datastores?.[0]?.error, undefined, "the admin socket does not abort a request once its body is read");
    assert.equal(api.jobs[0]?.overdue, 1);
    // The fix the note names.
    assert.match(await must(['verify', 'job', 'update', 'weekly-window', '--verify-window-days', '14', '--max-concurrent-snapshots', '2']), /windowDays: +14/);
    s = await status();
    assert.deepEqual([s.jobs[0]?.window, s.jobs[0]?.overdue, s.notes], ['14 days', 0, []]);
    // Back to ignore-verified: the window is deleted, then the old settings may be given.
    await must(['verify', 'job', 'update', 'weekly-window', '--delete', 'verify-window-days', '--ignore-verified', '--outdated-after', '30']);
    assert.match(await must(['verify', 'job', 'list']), /weekly-window +ibs-primary +daily +true +30 +2/);
  });
});

test('a job setting edited by hand into something invalid: every list shows the job with its problem, the scheduler runs the others, an update must give the value, remove works', async () => {
  await inHome('ibs-jobcfg-', async ({ home, must, serve, stop }) => {
    await must(['datastore', 'create', 'ibs-primary']);
    await must(['datastore', 'create', 'ibs-second']);
    await must(['verify', 'job', 'create', 'good', '--store', 'ibs-primary', '--schedule', 'daily']);
    await must(['verify', 'job', 'create', 'edited', '--store', 'ibs-primary', '--schedule', 'daily', '--verify-window-days', '7']);
    await must(['prune', 'job', 'create', 'keep', '--store', 'ibs-primary', '--schedule', 'daily', '--keep-daily', '7']);
    await must(['prune', 'job', 'create', 'pruned', '--store', 'ibs-primary', '--schedule', 'daily', '--keep-daily', '7']);
    await must(['sync', 'create', '--name', 'copy', '--store', 'ibs-primary', '--remote-store', 'ibs-second', '--direction', 'push', '--schedule', 'daily']);
    await must(['sync', 'create', '--name', 'filtered', '--store', 'ibs-primary', '--remote-store', 'ibs-second', '--direction', 'push', '--ns', 'a']);
    const secret = join(home, 'remote.secret');
    await writeFile(secret, 'not used\n');
    const remote = (name: string): string[] => ['remote', 'create', name, '--host', '127.0.0.1', '--auth-id', 'sync@ibs!t', '--secret-file', secret, '--fingerprint', Array(32).fill('ab').join(':')];
    await must(remote('offsite'));
    await must(['sync', 'create', '--name', 'fetch', '--store', 'ibs-primary', '--remote', 'offsite', '--remote-store', 'ibs-second', '--direction', 'pull']);
    const edit = async (file: string, from: RegExp, to: string): Promise<string> => {
      const path = join(home, 'etc', file);
      const text = await readFile(path, 'utf8');
      assert.match(text, from);
      await writeFile(path, text.replace(from, to));
      return path;
    };
    const verifyCfg = await edit('verification.cfg', /verify-window-days 7/, 'verify-window-days seven');
    await edit('prune.cfg', /(prune: pruned\n(?:\t[^\n]*\n)*?)\tkeep-daily 7/, '$1\tkeep-daily seven');
    const syncCfg = await edit('sync.cfg', /(sync: copy\n(?:\t[^\n]*\n)*?)\tworker-threads 1/, '$1\tworker-threads four');
    await edit('sync.cfg', /(sync: filtered\n(?:\t[^\n]*\n)*)/, '$1\tinclude [keep-daily\n');
    await edit('sync.cfg', /sync: fetch\n/, 'sync: fetch\n\tmax-depth deep\n');

    // Each list shows every job; the bad ones with file, job, value and the commands that correct or remove them.
    const listed = async (args: string[]): Promise<Array<{ id: string; problem?: string; lastSummary?: string }>> => JSON.parse(await must([...args, '--output', 'json'])) as Array<{ id: string; problem?: string; lastSummary?: string }>;
    const verifyJobs = await listed(['verify', 'job', 'list']);
    assert.deepEqual(verifyJobs.map((j) => [j.id, j.problem === undefined]), [['good', true], ['edited', false]]);
    assert.match(verifyJobs[1]?.problem ?? '', /verification\.cfg: verification job "edited" is invalid: Invalid verify-window-days "seven": expected a number\. Correct it with "verify job update edited --SETTING VALUE", or remove the job \("verify job remove edited"\)/);
    const pruneJobs = await listed(['prune', 'job', 'list']);
    assert.deepEqual(pruneJobs.map((j) => [j.id, j.problem === undefined]), [['keep', true], ['pruned', false]]);
    assert.match(pruneJobs[1]?.problem ?? '', /prune\.cfg: prune job "pruned" is invalid: Invalid keep-daily "seven"/);
    const syncJobs = await listed(['sync', 'list']);
    assert.deepEqual(syncJobs.map((j) => [j.id, j.problem === undefined]), [['copy', false], ['filtered', false], ['fetch', false]]);
    assert.match(syncJobs[0]?.problem ?? '', /sync\.cfg: sync job "copy" is invalid: Invalid worker-threads "four": expected a number\. Correct it with "sync update --name copy --SETTING VALUE"/);
    assert.match(syncJobs[1]?.problem ?? '', /Invalid include "\[keep-daily": expected a JSON list of strings/);
    assert.equal('workerThreads' in (syncJobs[0] ?? {}), false, 'a value that does not read is not shown as NaN');
    assert.match(await must(['sync', 'list']), /PROBLEM/);
    assert.match(await must(['prune', 'job', 'list']), /keep +ibs-primary +daily +keep-daily=7\n/);
    assert.match(await must(['sync', 'show', '--name', 'copy']), /problem: .*worker-threads "four"/);
    // A bad job still counts as a user of the remote it names; other remotes are removed as usual.
    const busy = await ibs(home, ['remote', 'remove', 'offsite']);
    assert.equal(busy.code, 9, busy.stderr);
    assert.match(busy.stderr, /Remote "offsite" is used by sync job\(s\) fetch/);
    await must(remote('unused'));
    await must(['remote', 'remove', 'unused']);

    // The other jobs still run; the scheduler skips the invalid ones and says so.
    assert.equal(JSON.parse(await must(['verify', 'job', 'run', 'good', '--output', 'json'])).ok, true);
    const run = await ibs(home, ['sync', 'run', '--name', 'copy']);
    assert.equal(run.code, 6);
    assert.match(run.stderr, /worker-threads "four"/);
    await serve();
    let log = '';
    for (let i = 0; i < 100 && !/"job":"sync\/filtered"/.test(log); i++) {
      await new Promise((r) => setTimeout(r, 100));
      log = await readFile(join(home, 'log', 'scheduler.log'), 'utf8').catch(() => '');
    }
    for (const job of ['verify/edited', 'prune/pruned', 'sync/copy', 'sync/filtered', 'sync/fetch']) assert.match(log, new RegExp(`"level":"error".*"msg":"job skipped: invalid configuration".*"job":"${job}"`));
    assert.doesNotMatch(log, /"job":"verify\/good"/);
    await stop();

    // An update that does not give the value that does not read is refused, names it, and writes nothing.
    const before = await readFile(syncCfg, 'utf8');
    const comment = await ibs(home, ['sync', 'update', '--name', 'copy', '--comment', 'x']);
    assert.equal(comment.code, 6);
    assert.match(comment.stderr, /sync job "copy" has worker-threads "four", which does not read: give --worker-threads with this change too, or remove the job \("sync remove --name copy"\)/);
    assert.equal(await readFile(syncCfg, 'utf8'), before);
    const pruneComment = await ibs(home, ['prune', 'job', 'update', 'pruned', '--comment', 'x']);
    assert.equal(pruneComment.code, 6);
    assert.match(pruneComment.stderr, /keep-daily "seven", which does not read: give --keep-daily/);
    // Given, or deleted, the job reads again and runs.
    await must(['sync', 'update', '--name', 'copy', '--worker-threads', '2']);
    await must(['sync', 'update', '--name', 'filtered', '--include', 'keep-daily=*']);
    await must(['verify', 'job', 'update', 'edited', '--verify-window-days', '7']);
    await must(['prune', 'job', 'update', 'pruned', '--keep-daily', '9', '--keep-weekly', '2']);
    for (const args of [['verify', 'job', 'list'], ['prune', 'job', 'list']]) assert.deepEqual((await listed(args)).filter((j) => j.problem !== undefined), [], args.join(' '));
    assert.deepEqual((await listed(['sync', 'list'])).filter((j) => j.problem !== undefined).map((j) => j.id), ['fetch']);
    assert.match(await must(['verify', 'job', 'list']), /edited +ibs-primary +daily +7/);
    assert.match(await must(['prune', 'job', 'list']), /pruned +ibs-primary +daily +keep-daily=9 keep-weekly=2/);
    assert.match(await must(['sync', 'run', '--name', 'copy']), /copied 0 snapshot/);
    assert.match(String((await listed(['sync', 'list'])).find((j) => j.id === 'copy')?.lastSummary), /^transferred 0 B .*copied 0 snapshot/, 'a run without a server keeps its summary too');

    // A bad job is removed like any other.
    await edit('verification.cfg', /verify-window-days 7/, 'verify-window-days seven');
    await must(['verify', 'job', 'remove', 'edited']);
    assert.doesNotMatch(await readFile(verifyCfg, 'utf8'), /edited/);
    await must(['sync', 'remove', '--name', 'fetch']);
    await must(['remote', 'remove', 'offsite']);
  });
});

test('a datastore setting edited by hand into something invalid: named where it is listed, the other datastores and the scheduler go on, update must give it, remove works', async () => {
  await inHome('ibs-dscfg-', async ({ data, home, must, serve, stop }) => {
    for (const name of ['good', 'edited', 'gone']) await must(['datastore', 'create', name]);
    await must(['datastore', 'update', 'good', '--gc-schedule', 'daily']);
    await must(['datastore', 'update', 'edited', '--gc-schedule', 'daily', '--keep-daily', '7']);
    const cfg = join(home, 'etc', 'datastore.cfg');
    const text = await readFile(cfg, 'utf8');
    const edited = text
      .replace(/(datastore: edited\n(?:\t[^\n]*\n)*?)\tgc-schedule daily\n/, '$1\tgc-schedule every sunday\n')
      .replace('\tkeep-daily 7\n', '\tkeep-daily seven\n')
      .replace(/(datastore: gone\n(?:\t[^\n]*\n)*?)\tpath \/[^\n]*\n/, '$1\tpath relative/gone\n');
    assert.notEqual(edited, text);
    await writeFile(cfg, edited);

    // Listed with what is wrong and how to correct it; the others are listed as usual.
    const listed = JSON.parse(await must(['datastore', 'list', '--output', 'json'])) as Array<{ name: string; problem?: string }>;
    assert.deepEqual(listed.map((d) => d.name), ['good', 'edited', 'gone']);
    assert.match(listed[1]?.problem ?? '', /datastore\.cfg: datastore edited: keep-daily "seven" is not a whole number from 0 to 100000\. Correct it with "datastore update edited --keep-daily N"/);
    assert.match(listed[2]?.problem ?? '', /datastore gone: path "relative\/gone" is not an absolute path/);
    assert.equal(listed[0]?.problem, undefined);
    assert.match(await must(['datastore', 'list']), /PROBLEM/);
    // The other datastores work, and new ones can be created.
    await must(['backup', 'create', '--quiet', '--store', 'good', '--id', 'h', `root.tar:${data}`]);
    await must(['datastore', 'create', 'third']);
    const shown = await ibs(home, ['datastore', 'show', 'edited']);
    assert.equal(shown.code, 6);
    assert.match(shown.stderr, /keep-daily "seven"/);

    // The job overview names the GC schedule that cannot run; the scheduler skips it and runs the rest.
    const jobs = JSON.parse(await must(['job', 'list', '--output', 'json'])) as Array<{ job: string; problem?: string }>;
    assert.deepEqual(jobs.map((j) => [j.job, j.problem === undefined]), [['gc/good', true], ['gc/edited', false], ['gc/gone', false]]);
    await serve();
    let log = '';
    for (let i = 0; i < 100 && !/"job":"gc\/gone"/.test(log); i++) {
      await new Promise((r) => setTimeout(r, 100));
      log = await readFile(join(home, 'log', 'scheduler.log'), 'utf8').catch(() => '');
    }
    assert.match(log, /"msg":"job skipped: invalid configuration".*"job":"gc\/edited"/);
    assert.doesNotMatch(log, /cannot read job configuration/);
    await stop();

    // A change must give each value that does not read; nothing is written until it does.
    const comment = await ibs(home, ['datastore', 'update', 'edited', '--comment', 'x']);
    assert.equal(comment.code, 6);
    assert.match(comment.stderr, /keep-daily "seven".*This change does not give --keep-daily/);
    const keepOnly = await ibs(home, ['datastore', 'update', 'edited', '--keep-daily', '7']);
    assert.equal(keepOnly.code, 6);
    assert.match(keepOnly.stderr, /gc-schedule "every sunday" is not a calendar event.*This change does not give --gc-schedule/);
    assert.equal((await readFile(cfg, 'utf8')).includes('keep-daily seven'), true);
    await must(['datastore', 'update', 'edited', '--keep-daily', '7', '--gc-schedule', 'sun 02:00']);
    assert.equal((JSON.parse(await must(['datastore', 'list', '--output', 'json'])) as Array<{ name: string; problem?: string }>).find((d) => d.name === 'edited')?.problem, undefined);

    // One whose path does not read is removed from the configuration, but its data is not destroyed through it.
    const destroy = await ibs(home, ['datastore', 'remove', 'gone', '--destroy-data']);
    assert.equal(destroy.code, 6);
    assert.match(destroy.stderr, /path "relative\/gone"/);
    assert.match(await must(['datastore', 'remove', 'gone']), /Removed datastore gone/);
    assert.deepEqual((JSON.parse(await must(['datastore', 'list', '--output', 'json'])) as Array<{ name: string }>).map((d) => d.name), ['good', 'edited', 'third']);
  });
});
