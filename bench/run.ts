/**
 * `npm run bench`: backup and restore throughput of ironcore-backup (encrypted) against restic on the same
 * corpus in the same run, with peak memory. Prints figures and ratios; asserts nothing.
 *
 * Corpus: the Debian linux-source tarball extracted when /usr/src/linux-source-*.tar.xz exists, else a
 * generated tree of source-like text files; plus an image of text, zeros and random regions (1 GiB by default).
 * BENCH_IMAGE_MIB and BENCH_TREE_MIB scale the generated parts; BENCH_DIR sets the work folder; BENCH_REPEAT
 * (default 3) how many times each step runs: the table gives the median and the range.
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildCorpus, imageMiB, measure, mibps, passphrase, repeat, root, settle, summary, warmCorpus, work, type Run } from './common.ts';

const RESTORED = /^restore-(ibs|ibs\.img|restic)(-\d+)?$/;

async function removeRestored(): Promise<void> {
  for (const name of await readdir(work)) if (RESTORED.test(name)) await rm(join(work, name), { recursive: true, force: true });
}

async function main(): Promise<void> {
  await mkdir(work, { recursive: true });
  console.log(`bench: corpus in ${work}`);
  const corpus = await buildCorpus();
  console.log(`corpus: ${corpus.source} + ${imageMiB} MiB image (text, zeros, random); ${(corpus.bytes / 1024 / 1024).toFixed(0)} MiB in all`);
  const home = join(work, 'ibs-home');
  await rm(home, { recursive: true, force: true });
  // Restored trees are removed at the end of the bench (after every repeat), never between restores: ext4 does
  // not reuse inodes freed in the last minutes, and the first restore after 83k files were removed spent 18% of
  // all CPU in ext4_create -> recently_deleted (perf), 20-23 s instead of 7 s. These are leftovers of a run cut
  // short.
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
  const mustIbs = async (args: string[]): Promise<void> => {
    const r = await ibs(args);
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  };
  await mustIbs(['key', 'create', keyfile]);
  const haveRestic = await measure('restic', ['version']).then((r) => r.code === 0, () => false);
  const resticEnv = (rep: number): Record<string, string> => ({ RESTIC_REPOSITORY: join(work, `restic-repo-${rep}`), RESTIC_PASSWORD: passphrase, RESTIC_CACHE_DIR: join(work, 'restic-cache') });
  const restic = async (rep: number, args: string[]): Promise<Run> => {
    await settle();
    return measure('restic', ['--quiet', ...args], resticEnv(rep));
  };
  for (const name of await readdir(work)) if (/^restic-repo(-\d+)?$/.test(name)) await rm(join(work, name), { recursive: true, force: true });
  // Each step runs restic's counterpart right after ours, so that both meet the same machine: on a shared VM
  // the speed drifts by tens of percent within minutes (restic's initial backup took 18 s in one run, 47 s in
  // the next). And each step runs BENCH_REPEAT times, into a fresh datastore and repository each time: one run
  // of a step moved by up to 40% from one bench to the next (restore 12.1 s, then 10.3 s), more than changes did.
  await warmCorpus();
  const steps = ['backup (initial)', 'backup (unchanged)', 'restore'] as const;
  const ours: Record<string, Run[]> = {};
  const theirs: Record<string, Run[]> = {};
  const parts: { tree: Run[]; image: Run[] } = { tree: [], image: [] };
  const record = (step: string, o: Run, t: Run | undefined): void => {
    (ours[step] ??= []).push(o);
    if (t) (theirs[step] ??= []).push(t);
  };
  for (let rep = 0; rep < repeat; rep++) {
    const store = `bench${rep}`;
    await mustIbs(['datastore', 'create', store]);
    if (haveRestic) await restic(rep, ['init']);
    const backup = ['backup', 'create', '--quiet', '--store', store, '--id', 'bench', '--keyfile', keyfile, `root.tar:${corpus.tree}`, `disk.img:${corpus.image}`];
    const ib = await ibs(backup);
    if (ib.code !== 0) throw new Error(ib.stderr);
    record(steps[0], ib, haveRestic ? await restic(rep, ['backup', corpus.tree, corpus.image]) : undefined);
    const snap = JSON.parse((await new Promise<string>((r) => {
      const c = spawn(launcher, ['snapshot', 'list', store, '--output', 'json'], { env: { ...process.env, ...env } });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.on('exit', () => r(out));
    })))[0].snapshot as string;
    record(steps[1], await ibs(backup), haveRestic ? await restic(rep, ['backup', corpus.tree, corpus.image]) : undefined);
    // Restored copies stay until the end (see removeRestored above).
    const tree = await ibs(['backup', 'restore', snap, 'root.tar', join(work, `restore-ibs-${rep}`), '--quiet', '--store', store, '--keyfile', keyfile]);
    const image = await ibs(['backup', 'restore', snap, 'disk.img', join(work, `restore-ibs.img-${rep}`), '--quiet', '--store', store, '--keyfile', keyfile]);
    parts.tree.push(tree);
    parts.image.push(image);
    const restore: Run = { seconds: tree.seconds + image.seconds, peakRssMiB: Math.max(tree.peakRssMiB, image.peakRssMiB), code: tree.code || image.code, stderr: tree.stderr + image.stderr };
    record(steps[2], restore, haveRestic ? await restic(rep, ['restore', 'latest', '--target', join(work, `restore-restic-${rep}`)]) : undefined);
    console.log(`run ${rep + 1} of ${repeat}: ${steps.map((st) => `${st} ${ours[st]?.at(-1)?.seconds.toFixed(2)} s${haveRestic ? ` / ${theirs[st]?.at(-1)?.seconds.toFixed(2)} s` : ''}`).join(', ')}`);
  }
  console.log('');
  console.log(`median of ${repeat} run(s) each; range in brackets`);
  console.log(`${'step'.padEnd(20)} ${'ironcore-backup'.padEnd(50)} ${'restic'.padEnd(50)} ratio (restic time / ours)`);
  for (const step of steps) {
    const o = summary(ours[step] ?? []);
    const t = theirs[step] ? summary(theirs[step]) : undefined;
    const fmt = (r: (Run & { range: string }) | undefined): string => (r ? `${r.seconds.toFixed(2)} s ${r.range ? `[${r.range}] ` : ''}${mibps(corpus.bytes, r.seconds)} peak ${r.peakRssMiB.toFixed(0)} MiB${r.code ? ' FAILED' : ''}` : 'n/a');
    const ratio = t ? `${(t.seconds / o.seconds).toFixed(2)}x` : 'n/a';
    console.log(`${step.padEnd(20)} ${fmt(o).padEnd(50)} ${fmt(t).padEnd(50)} ${ratio}`);
  }
  // The restore row adds two commands: their parts, for telling the writing of many files from that of one image.
  const tree = summary(parts.tree);
  const image = summary(parts.image);
  console.log(`restore parts: tree ${tree.seconds.toFixed(2)} s [${tree.range}] (peak ${tree.peakRssMiB.toFixed(0)} MiB), image ${image.seconds.toFixed(2)} s [${image.range}] (peak ${image.peakRssMiB.toFixed(0)} MiB)`);
  await removeRestored();
  // The datastores and repositories of the repeats go too (about 2.5 GB per repeat).
  await rm(home, { recursive: true, force: true });
  for (let rep = 0; rep < repeat; rep++) await rm(join(work, `restic-repo-${rep}`), { recursive: true, force: true });
  if (!haveRestic) console.log('\nrestic is not installed (apt-get install restic): no comparison figures.');
  console.log('\nTargets: backup and restore at least 2x restic\'s throughput; peak RSS at most 300 MiB.');
}

await main();
