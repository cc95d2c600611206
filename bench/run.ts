/**
 * `npm run bench`: backup and restore throughput of ironcore-backup (encrypted) against restic on the same
 * corpus in the same run, with peak memory. Prints figures and ratios; asserts nothing.
 *
 * Corpus: the Debian linux-source tarball extracted when /usr/src/linux-source-*.tar.xz exists, else a
 * generated tree of source-like text files; plus an image of text, zeros and random regions (1 GiB by default).
 * BENCH_IMAGE_MIB and BENCH_TREE_MIB scale the generated parts; BENCH_DIR sets the work folder.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const work = process.env.BENCH_DIR ?? join(root, 'bench', '.work');
const imageMiB = Number(process.env.BENCH_IMAGE_MIB ?? 1024);
const treeMiB = Number(process.env.BENCH_TREE_MIB ?? 400);
const passphrase = 'bench passphrase 1234';

interface Run {
  seconds: number;
  peakRssMiB: number;
  code: number;
  stderr: string;
}

/** Runs a command, sampling its peak resident memory (VmHWM) until it exits. */
function measure(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let peak = 0;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const sample = async (): Promise<void> => {
      try {
        const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
        const m = /VmHWM:\s+(\d+) kB/.exec(status);
        if (m) peak = Math.max(peak, Number(m[1]) / 1024);
      } catch {
        /* exited */
      }
    };
    const timer = setInterval(() => void sample(), 20);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(timer);
      resolvePromise({ seconds: Number(process.hrtime.bigint() - start) / 1e9, peakRssMiB: peak, code: code ?? -1, stderr });
    });
  });
}

async function sh(command: string): Promise<void> {
  const r = await measure('bash', ['-c', command]);
  if (r.code !== 0) throw new Error(`${command}: ${r.stderr}`);
}

async function buildCorpus(): Promise<{ tree: string; image: string; bytes: number; source: string }> {
  const tree = join(work, 'corpus', 'tree');
  const image = join(work, 'corpus', 'disk.img');
  const marker = join(work, 'corpus', `.done-${imageMiB}-${treeMiB}`);
  const tarball = existsSync('/usr/src') ? readdirSync('/usr/src').find((f) => /^linux-source-.*\.tar\.xz$/.test(f)) : undefined;
  const source = tarball ? `linux-source (${tarball})` : `generated text tree (${treeMiB} MiB)`;
  if (!existsSync(marker)) {
    await rm(join(work, 'corpus'), { recursive: true, force: true });
    await mkdir(tree, { recursive: true });
    if (tarball) await sh(`tar -xJf /usr/src/${tarball} -C ${tree}`);
    else {
      const words = ['static', 'int', 'return', 'struct', 'void', 'if', 'else', 'for', 'while', 'unsigned', 'long', 'const', 'char', '{', '}', ';', '(', ')', '*', 'spin_lock', 'mutex', 'kmalloc', 'GFP_KERNEL', 'NULL', '0x', 'error'];
      let written = 0;
      let n = 0;
      while (written < treeMiB * 1024 * 1024) {
        const dir = join(tree, `d${Math.floor(n / 200)}`, `s${Math.floor(n / 20) % 10}`);
        await mkdir(dir, { recursive: true });
        const size = 2000 + Math.floor(Math.random() * 60000);
        const parts: string[] = [];
        let len = 0;
        while (len < size) {
          const line = Array.from({ length: 8 }, () => words[Math.floor(Math.random() * words.length)]).join(' ') + ` ${n}_${len}\n`;
          parts.push(line);
          len += line.length;
        }
        await writeFile(join(dir, `f${n}.c`), parts.join(''));
        written += len;
        n++;
      }
    }
    const handle = await open(image, 'w');
    const block = 4 * 1024 * 1024;
    const text = Buffer.from('The quick brown fox jumps over the lazy dog. '.repeat(Math.ceil(block / 45)).slice(0, block));
    for (let i = 0; i < imageMiB / 4; i++) {
      const kind = i % 3;
      await handle.write(kind === 0 ? text : kind === 1 ? Buffer.alloc(block) : randomBytes(block));
    }
    await handle.close();
    await writeFile(marker, '');
  }
  const du = await new Promise<string>((r) => {
    const c = spawn('du', ['-sb', join(work, 'corpus')]);
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', () => r(out));
  });
  return { tree, image, bytes: Number(du.split(/\s/)[0]), source };
}

function mibps(bytes: number, seconds: number): string {
  return `${(bytes / 1024 / 1024 / seconds).toFixed(1)} MiB/s`;
}

async function main(): Promise<void> {
  await mkdir(work, { recursive: true });
  console.log(`bench: corpus in ${work}`);
  const corpus = await buildCorpus();
  console.log(`corpus: ${corpus.source} + ${imageMiB} MiB image (text, zeros, random); ${(corpus.bytes / 1024 / 1024).toFixed(0)} MiB in all`);
  const home = join(work, 'ibs-home');
  await rm(home, { recursive: true, force: true });
  await rm(join(work, 'restore-ibs'), { recursive: true, force: true });
  await rm(join(work, 'restore-ibs.img'), { force: true });
  // Through the launcher users run, so that its runtime settings are measured too.
  const launcher = join(root, 'bin', 'ironcore-backup');
  const env = { IRONCORE_HOME: home, IBS_PASSPHRASE: passphrase };
  const ibs = (args: string[]): Promise<Run> => measure(launcher, args, env);
  const keyfile = join(work, 'bench.key');
  await rm(keyfile, { force: true });
  for (const args of [['datastore', 'create', 'bench'], ['key', 'create', keyfile]]) {
    const r = await ibs(args);
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  }
  const rows: Array<{ step: string; ibs?: Run; restic?: Run }> = [];
  const ib = await ibs(['backup', 'create', '--quiet', '--store', 'bench', '--id', 'bench', '--keyfile', keyfile, `root.tar:${corpus.tree}`, `disk.img:${corpus.image}`]);
  if (ib.code !== 0) throw new Error(ib.stderr);
  const snap = JSON.parse((await new Promise<string>((r) => {
    const c = spawn(launcher, ['snapshot', 'list', 'bench', '--output', 'json'], { env: { ...process.env, ...env } });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', () => r(out));
  })))[0].snapshot as string;
  const ibIncr = await ibs(['backup', 'create', '--quiet', '--store', 'bench', '--id', 'bench', '--keyfile', keyfile, `root.tar:${corpus.tree}`, `disk.img:${corpus.image}`]);
  const ibRestoreTree = await ibs(['backup', 'restore', snap, 'root.tar', join(work, 'restore-ibs'), '--quiet', '--store', 'bench', '--keyfile', keyfile]);
  const ibRestoreImg = await ibs(['backup', 'restore', snap, 'disk.img', join(work, 'restore-ibs.img'), '--quiet', '--store', 'bench', '--keyfile', keyfile]);
  const ibRestore: Run = { seconds: ibRestoreTree.seconds + ibRestoreImg.seconds, peakRssMiB: Math.max(ibRestoreTree.peakRssMiB, ibRestoreImg.peakRssMiB), code: ibRestoreTree.code || ibRestoreImg.code, stderr: ibRestoreTree.stderr + ibRestoreImg.stderr };
  rows.push({ step: 'backup (initial)', ibs: ib }, { step: 'backup (unchanged)', ibs: ibIncr }, { step: 'restore', ibs: ibRestore });

  const haveRestic = await measure('restic', ['version']).then((r) => r.code === 0, () => false);
  if (haveRestic) {
    const repo = join(work, 'restic-repo');
    await rm(repo, { recursive: true, force: true });
    await rm(join(work, 'restore-restic'), { recursive: true, force: true });
    const renv = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: passphrase, RESTIC_CACHE_DIR: join(work, 'restic-cache') };
    const restic = (args: string[]): Promise<Run> => measure('restic', ['--quiet', ...args], renv);
    await restic(['init']);
    rows[0]!.restic = await restic(['backup', corpus.tree, corpus.image]);
    rows[1]!.restic = await restic(['backup', corpus.tree, corpus.image]);
    rows[2]!.restic = await restic(['restore', 'latest', '--target', join(work, 'restore-restic')]);
  }
  console.log('');
  console.log(`${'step'.padEnd(20)} ${'ironcore-backup'.padEnd(36)} ${'restic'.padEnd(36)} ratio (restic time / ours)`);
  for (const row of rows) {
    const fmt = (r: Run | undefined): string => (r ? `${r.seconds.toFixed(2)} s ${mibps(corpus.bytes, r.seconds)} peak ${r.peakRssMiB.toFixed(0)} MiB${r.code ? ' FAILED' : ''}` : 'n/a');
    const ratio = row.ibs && row.restic ? `${(row.restic.seconds / row.ibs.seconds).toFixed(2)}x` : 'n/a';
    console.log(`${row.step.padEnd(20)} ${fmt(row.ibs).padEnd(36)} ${fmt(row.restic).padEnd(36)} ${ratio}`);
  }
  if (!haveRestic) console.log('\nrestic is not installed (apt-get install restic): no comparison figures.');
  console.log('\nTargets: backup and restore at least 2x restic\'s throughput; peak RSS at most 300 MiB.');
}

await main();
