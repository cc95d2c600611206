import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT, ibs, sh, startServer, tempDir } from './helpers.ts';

const SERVICES = ['api', 'scheduler', 'worker', 'verifier', 'gc', 'sync', 'notify'];
const JOURNALD = '/lib/systemd/systemd-journald';
const SOCKET = '/run/systemd/journal/socket';

test('the systemd unit installs under every service name the troubleshooting page uses', async (t) => {
  if ((await sh('command -v systemctl')).code !== 0) return t.skip('systemctl is not installed (apt-get install systemd)');
  const dir = await tempDir('ibs-unit-');
  try {
    const units = join(dir.path, 'etc', 'systemd', 'system');
    await mkdir(units, { recursive: true });
    await copyFile(join(ROOT, 'packaging', 'ironcore-backup.service'), join(units, 'ironcore-backup.service'));
    const enabled = await sh(`systemctl --root='${dir.path}' enable ironcore-backup.service`);
    assert.equal(enabled.code, 0, enabled.stderr);
    for (const service of SERVICES) assert.equal(await readlink(join(units, `ironcore-backup-${service}.service`)), '/etc/systemd/system/ironcore-backup.service', service);
    assert.equal(await readlink(join(units, 'multi-user.target.wants', 'ironcore-backup.service')), '/etc/systemd/system/ironcore-backup.service');
  } finally {
    await dir.cleanup();
  }
});

/** The system journal: the running one, or a systemd-journald started for this test (stopped after). */
async function withJournal(run: () => Promise<void>): Promise<void> {
  if (existsSync(SOCKET)) return run();
  const createdRun = !existsSync('/run/systemd/journal');
  const createdLog = !existsSync('/run/log/journal');
  const journald: ChildProcess = spawn(JOURNALD, [], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100 && !existsSync(SOCKET); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(SOCKET), `${JOURNALD} did not create ${SOCKET}`);
    await run();
  } finally {
    const exited = new Promise((r) => journald.once('exit', r));
    journald.kill('SIGTERM');
    await exited;
    if (createdRun) await rm('/run/systemd/journal', { recursive: true, force: true });
    if (createdLog) await rm('/run/log/journal', { recursive: true, force: true });
  }
}

test('with --journal yes each service writes to the journal under its unit: "journalctl -u ironcore-backup-notify -n 200" shows a failed delivery', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root: journalctl -u shows root\'s entries about another unit');
  for (const tool of ['journalctl', 'logger']) if ((await sh(`command -v ${tool}`)).code !== 0) return t.skip(`${tool} is not installed`);
  if (!existsSync(SOCKET) && !existsSync(JOURNALD)) return t.skip(`no system journal and no ${JOURNALD} (apt-get install systemd)`);
  const dir = await tempDir('ibs-journal-');
  const home = join(dir.path, 'home');
  try {
    await mkdir(join(dir.path, 'data'), { recursive: true });
    await writeFile(join(dir.path, 'data', 'a.txt'), 'some data\n');
    // A name of its own, so that entries of earlier runs in a lasting journal do not count.
    const target = `ops-hook-${process.pid}-${Date.now()}`;
    for (const args of [
      ['datastore', 'create', 'ibs-primary'],
      ['datastore', 'create', 'ibs-copy'],
      ['sync', 'create', '--name', 'to-copy', '--store', 'ibs-primary', '--remote-store', 'ibs-copy', '--direction', 'push'],
      ['backup', 'create', '--quiet', '--store', 'ibs-primary', '--id', 'h1', `root.tar:${join(dir.path, 'data')}`],
      ['notification', 'target', 'create', target, '--type', 'webhook', '--url', 'http://127.0.0.1:9/hook'],
      ['notification', 'matcher', 'create', 'all', '--target', target],
    ]) {
      const r = await ibs(home, args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    const refused = await ibs(home, ['server', '--journal', 'maybe']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /Invalid --journal "maybe": expected auto, yes or no/);

    await withJournal(async () => {
      const server = await startServer(home, 0, {}, ['--journal', 'yes']);
      try {
        // Printed right after the fingerprint line, which startServer waits for: it may come a moment later.
        for (let i = 0; i < 100 && !/service logs also go to the system journal/.test(server.output()); i++) await new Promise((r) => setTimeout(r, 50));
        assert.match(server.output(), /service logs also go to the system journal/);
        // A job run by the server: its result goes to the sync service's log and to the notification matchers.
        const ran = await ibs(home, ['sync', 'run', '--name', 'to-copy', '--output', 'json']);
        assert.equal(ran.code, 0, ran.stderr);
        const upid = (JSON.parse(ran.stdout) as { upid?: string }).upid;
        assert.ok(upid, ran.stdout);
        const journal = async (unit: string, pattern: RegExp): Promise<string> => {
          let out = '';
          for (let i = 0; i < 100 && !pattern.test(out); i++) {
            await new Promise((r) => setTimeout(r, 100));
            // The command as the troubleshooting page prints it (no pager, as a script runs it).
            out = (await sh(`journalctl -u ${unit} -n 200 --no-pager`)).stdout;
          }
          return out;
        };
        const notify = await journal('ironcore-backup-notify', new RegExp(`delivery failed.*"target":"${target}"`));
        assert.match(notify, new RegExp(`ironcore-backup-notify\\[\\d+\\]: delivery failed.*"target":"${target}".*"error":"webhook ${target}: fetch failed"`));
        const sync = await journal('ironcore-backup-sync', new RegExp(`task ok \\(task ${upid.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`));
        assert.ok(sync.split('\n').some((l) => /ironcore-backup-sync\[\d+\]: task ok/.test(l) && l.includes(`(task ${upid})`)), `the sync service's journal names the task ${upid}:\n${sync}`);
        // The API's line per request stays in its file only.
        assert.doesNotMatch(await journal('ironcore-backup-api', /listening/), /"method"/);
      } finally {
        await server.stop();
      }
      // The failing target's retries do not hold the stopping server: they are given up, and the journal says so.
      const { stdout } = await sh('journalctl -u ironcore-backup-notify -n 200 --no-pager');
      assert.match(stdout, new RegExp(`delivery failed \\{"target":"${target}","error":"given up: the server is stopping"\\}`));
    });
  } finally {
    await dir.cleanup();
  }
});
