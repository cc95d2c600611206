import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..');
export const ENTRY = join(ROOT, 'src', 'bin', 'ironcore-backup.ts');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

/** Starts the real command with its own IRONCORE_HOME; returns the child for tests that kill it. */
export function startIbs(home: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--no-warnings', ENTRY, ...args], {
    env: { ...process.env, IRONCORE_HOME: home, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function ibs(home: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = startIbs(home, args, env);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolvePromise({ code: code ?? -1, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBytes });
    });
  });
}

/** Runs a shell pipeline (for GNU tar oracles). */
export function sh(command: string, options: { cwd?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('bash', ['-o', 'pipefail', '-c', command], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolvePromise({ code: code ?? -1, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBytes });
    });
  });
}

export async function tempDir(prefix: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** A free TCP port on 127.0.0.1 (for servers that must come back on the same port after a kill). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolvePromise, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolvePromise(port));
    });
  });
}

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  fingerprint: string;
  output(): string;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

/** Starts `ironcore-backup server` on 127.0.0.1 (a given port, or any) and waits until it listens. */
export async function startServer(home: string, port = 0, env: Record<string, string> = {}, args: string[] = []): Promise<ServerProcess> {
  const child = startIbs(home, ['server', '--listen', '127.0.0.1', '--port', String(port), ...args], env);
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  for (let i = 0; i < 400 && !/certificate fingerprint: [0-9a-f:]{95}/.test(output) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
  const listening = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1];
  const fingerprint = /certificate fingerprint: ([0-9a-f:]{95})/.exec(output)?.[1];
  if (!listening || !fingerprint) {
    child.kill('SIGKILL');
    throw new Error(`server in ${home} did not start:\n${output}`);
  }
  const end = (signal: NodeJS.Signals) => async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.on('exit', r));
    child.kill(signal);
    await exited;
  };
  return { child, port: Number(listening), fingerprint, output: () => output, stop: end('SIGTERM'), kill: end('SIGKILL') };
}

const TMPFS_MAGIC = 0x01021994;

/**
 * How many bytes of each file (named relative to `dir`) are in the page cache, with its size (fincore): what
 * was written or read with direct I/O has none. Undefined when `dir` is on tmpfs, where every page is cached.
 */
export async function pageCache(dir: string, names: readonly string[]): Promise<Array<{ cached: number; size: number }> | undefined> {
  if ((await statfs(dir)).type === TMPFS_MAGIC) return undefined;
  const r = await sh(`fincore --bytes --noheadings --output RES,SIZE ${names.map((n) => `'${n}'`).join(' ')}`, { cwd: dir });
  if (r.code !== 0) throw new Error(`fincore: ${r.stderr}`);
  const rows = r.stdout.trim().split('\n').map((line) => line.trim().split(/\s+/).map(Number));
  if (rows.length !== names.length) throw new Error(`fincore answered ${rows.length} rows for ${names.length} files:\n${r.stdout}`);
  return rows.map(([cached, size]) => ({ cached: cached ?? NaN, size: size ?? NaN }));
}
