/**
 * `npm run bench`: backup and restore throughput of ironcore-backup (encrypted) against restic on the same
 * corpus in the same run, with peak memory. Prints figures and ratios; asserts nothing.
 *
 * Corpus: the Debian linux-source tarball extracted when /usr/src/linux-source-*.tar.xz exists, else a
 * generated tree of source-like text files; plus an image of text, zeros and random regions (1 GiB by default).
 * BENCH_IMAGE_MIB and BENCH_TREE_MIB scale the generated parts; BENCH_DIR sets the work folder.
 */
import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildCorpus, imageMiB, measure, mibps, passphrase, root, settle, warmCorpus, work, type Run } from './common.ts';

async function removeRestored(): Promise<void> {
  for (const name of ['restore-ibs', 'restore-ibs.img', 'restore-restic']) await rm(join(work, name), { recursive: true, force: true });
}

async function main(): Promise<void> {
  await mkdir(work, { recursive: true });
  console.log(`bench: corpus in ${work}`);
  const corpus = await buildCorpus();
  console.log(`corpus: ${corpus.source} + ${imageMiB} MiB image (text, zeros, random); ${(corpus.bytes / 1024 / 1024).toFixed(0)} MiB in all`);
  const home = join(work, 'ibs-home');
  await rm(home, { recursive: true, force: true });
  // Restored trees are removed once timed (below), not before the next run's restores: ext4 does not reuse
  // inodes freed in the last minutes, and the first restore after 83k files were removed spent 18% of all CPU
  // in ext4_create -> recently_deleted (perf), 20-23 s instead of 7 s. These are leftovers of a run cut short.
  await removeRestored();
  // Through the launcher users run, so that its runtime settings are measured too.
  const launcher = join(root, 'bin', 'ironcore-backup');
  const env = { IRONCORE_HOME: home, IBS_PASSPHRASE: passphrase };
  const ibs = async (args: string[]): Promise<Run> => {
    await settle();
    return measure(launcher, args, env);
  };
  const keyfile = join(work, 'bench.key');
  await rm(keyfile, { force: true });
  for (const args of [['datastore', 'create', 'bench'], ['key', 'create', keyfile]]) {
    const r = await ibs(args);
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  }
  const haveRestic = await measure('restic', ['version']).then((r) => r.code === 0, () => false);
  let restic: ((args: string[]) => Promise<Run>) | undefined;
  if (haveRestic) {
    const repo = join(work, 'restic-repo');
    await rm(repo, { recursive: true, force: true });
    const renv = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: passphrase, RESTIC_CACHE_DIR: join(work, 'restic-cache') };
    restic = async (args: string[]): Promise<Run> => {
      await settle();
      return measure('restic', ['--quiet', ...args], renv);
    };
    await restic(['init']);
  }
  // Each step runs restic's counterpart right after ours, so that both meet the same machine: on a shared VM
  // the speed drifts by tens of percent within minutes (restic's initial backup took 18 s in one run, 47 s in
  // the next).
  await warmCorpus();
  const backup = ['backup', 'create', '--quiet', '--store', 'bench', '--id', 'bench', '--keyfile', keyfile, `root.tar:${corpus.tree}`, `disk.img:${corpus.image}`];
  const ib = await ibs(backup);
  if (ib.code !== 0) throw new Error(ib.stderr);
  const rows: Array<{ step: string; ibs?: Run; restic?: Run | undefined }> = [{ step: 'backup (initial)', ibs: ib, restic: await restic?.(['backup', corpus.tree, corpus.image]) }];
  const snap = JSON.parse((await new Promise<string>((r) => {
    const c = spawn(launcher, ['snapshot', 'list', 'bench', '--output', 'json'], { env: { ...process.env, ...env } });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', () => r(out));
  })))[0].snapshot as string;
  rows.push({ step: 'backup (unchanged)', ibs: await ibs(backup), restic: await restic?.(['backup', corpus.tree, corpus.image]) });
  const ibRestoreTree = await ibs(['backup', 'restore', snap, 'root.tar', join(work, 'restore-ibs'), '--quiet', '--store', 'bench', '--keyfile', keyfile]);
  const ibRestoreImg = await ibs(['backup', 'restore', snap, 'disk.img', join(work, 'restore-ibs.img'), '--quiet', '--store', 'bench', '--keyfile', keyfile]);
  const ibRestore: Run = { seconds: ibRestoreTree.seconds + ibRestoreImg.seconds, peakRssMiB: Math.max(ibRestoreTree.peakRssMiB, ibRestoreImg.peakRssMiB), code: ibRestoreTree.code || ibRestoreImg.code, stderr: ibRestoreTree.stderr + ibRestoreImg.stderr };
  rows.push({ step: 'restore', ibs: ibRestore, restic: await restic?.(['restore', 'latest', '--target', join(work, 'restore-restic')]) });
  console.log('');
  console.log(`${'step'.padEnd(20)} ${'ironcore-backup'.padEnd(36)} ${'restic'.padEnd(36)} ratio (restic time / ours)`);
  for (const row of rows) {
    const fmt = (r: Run | undefined): string => (r ? `${r.seconds.toFixed(2)} s ${mibps(corpus.bytes, r.seconds)} peak ${r.peakRssMiB.toFixed(0)} MiB${r.code ? ' FAILED' : ''}` : 'n/a');
    const ratio = row.ibs && row.restic ? `${(row.restic.seconds / row.ibs.seconds).toFixed(2)}x` : 'n/a';
    console.log(`${row.step.padEnd(20)} ${fmt(row.ibs).padEnd(36)} ${fmt(row.restic).padEnd(36)} ${ratio}`);
  }
  // The restore row adds two commands: their parts, for telling the writing of many files from that of one image.
  console.log(`restore parts: tree ${ibRestoreTree.seconds.toFixed(2)} s (peak ${ibRestoreTree.peakRssMiB.toFixed(0)} MiB), image ${ibRestoreImg.seconds.toFixed(2)} s (peak ${ibRestoreImg.peakRssMiB.toFixed(0)} MiB)`);
  await removeRestored();
  if (!haveRestic) console.log('\nrestic is not installed (apt-get install restic): no comparison figures.');
  console.log('\nTargets: backup and restore at least 2x restic\'s throughput; peak RSS at most 300 MiB.');
}

await main();
