/** What the benchmarks share: the corpus, and running a command while sampling its peak memory. */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '..');
export const work = process.env.BENCH_DIR ?? join(root, 'bench', '.work');
export const imageMiB = Number(process.env.BENCH_IMAGE_MIB ?? 1024);
export const treeMiB = Number(process.env.BENCH_TREE_MIB ?? 400);
export const passphrase = 'bench passphrase 1234';

/** Runs of each timed step (BENCH_REPEAT, 1 to 9, default 3): the tables give the median, and the range. */
export const repeat = Number(process.env.BENCH_REPEAT ?? 3);
if (!Number.isInteger(repeat) || repeat < 1 || repeat > 9) throw new Error(`BENCH_REPEAT=${process.env.BENCH_REPEAT}: expected 1 to 9`);

export interface Run {
  seconds: number;
  peakRssMiB: number;
  code: number;
  stderr: string;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The median of several runs (its time; the peak memory of all of them), with the range of times. */
export function summary<R extends Run>(runs: R[]): R & { range: string } {
  const seconds = runs.map((r) => r.seconds);
  const sorted = [...runs].sort((a, b) => a.seconds - b.seconds);
  return {
    ...(sorted[sorted.length >> 1] as R),
    seconds: median(seconds),
    peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)),
    code: runs.find((r) => r.code !== 0)?.code ?? 0,
    stderr: runs.map((r) => r.stderr).join(''),
    range: runs.length > 1 ? `${Math.min(...seconds).toFixed(2)}-${Math.max(...seconds).toFixed(2)}` : '',
  };
}

/** Runs a command, sampling its peak resident memory (VmHWM) until it exits. */
export function measure(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
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

export async function sh(command: string): Promise<void> {
  const r = await measure('bash', ['-c', command]);
  if (r.code !== 0) throw new Error(`${command}: ${r.stderr}`);
}

/**
 * Before each timed command (untimed): what earlier steps wrote is flushed, so that no command pays for the
 * writeback of the one before it. On a disk, a restore timed right after the backups took 21.3 s against
 * restic's 16.4 s, while the dirty pages of both backups were still being written out.
 */
export function settle(): Promise<void> {
  return sh('sync');
}

/**
 * Reads the corpus once (untimed), so that the first tool timed does not read it from the disk and the next
 * from the page cache: after a cache drop, the first backup on the disk took 18.1 s against restic's 13.9 s
 * (8.1 s against 14.5 s with the corpus cached for both).
 */
export function warmCorpus(): Promise<void> {
  return sh(`tar -cf - -C '${join(work, 'corpus')}' . | cat > /dev/null`);
}

export async function buildCorpus(): Promise<{ tree: string; image: string; bytes: number; source: string }> {
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

export function mibps(bytes: number, seconds: number): string {
  return `${(bytes / 1024 / 1024 / seconds).toFixed(1)} MiB/s`;
}

