/**
 * Direct I/O (O_DIRECT) for whole objects written once and fsynced at once, such as chunks: the bytes go from
 * this process's memory to the device without a copy into the page cache. A buffered write of a new file
 * copies every byte into page-cache memory the kernel has to find first, which on these machines (a VM whose
 * free memory goes back to the host) costs more than the disk: 700 MB with fsync took 2.5 s buffered and
 * 0.56 s direct (dd, 2 MiB blocks), and the buffered copy was 28% of a receiving server's CPU. Since the file
 * is fsynced right after anyway, waiting for the device costs nothing extra; and a read-back then reads what
 * the device holds, not the page cache.
 *
 * O_DIRECT wants the memory, the file offset and the length aligned to the device's block size: the bytes are
 * copied into page-aligned memory (a WebAssembly memory: Node has no other page-aligned allocation), padded
 * with zeros to ALIGN, written, and the file cut back to its length. Where a file system refuses O_DIRECT
 * (EINVAL at open or at the first write), the caller writes the usual way.
 *
 * Synchronous calls (for worker threads that hold the bytes) use one staging area per thread; asynchronous
 * ones (the main thread) borrow one of at most MAX_STAGES, kept for the next writes: a WebAssembly memory
 * reserves much address space, of which V8 grants a limited amount, so they are few and never dropped.
 */
import { closeSync, constants, ftruncateSync, openSync, readSync, rmSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { Semaphore } from './pool.ts';
import { writeAll, writeAllSync } from './read-pieces.ts';

/** Alignment of memory, offsets and lengths: a page, which covers every logical block size up to 4 KiB. */
export const DIRECT_ALIGN = 4096;
const WASM_PAGE = 65536;

// Node's type definitions leave out the WebAssembly global (the DOM's include it): the little used here, typed.
const wasm = (globalThis as unknown as { WebAssembly: { Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer } } }).WebAssembly;

/** Bytes staged per system call: small, since each thread that writes keeps its staging area. */
const STAGE = 1024 * 1024;

let staging: Uint8Array | undefined;

/** A page-aligned staging area of STAGE bytes. */
const newStage = (): Uint8Array => new Uint8Array(new wasm.Memory({ initial: STAGE / WASM_PAGE }).buffer);

/** This thread's staging area for synchronous calls. */
function stage(): Uint8Array {
  staging ??= newStage();
  return staging;
}

const MAX_STAGES = 16;
const stageSlots = new Semaphore(MAX_STAGES);
/** Staging areas of asynchronous writes that have ended, for the next ones. */
const idle: Uint8Array[] = [];

/** A staging area for an asynchronous writer (waits while MAX_STAGES are in use); `giveBack` when done. */
async function borrowStage(): Promise<{ stage: Uint8Array; giveBack: () => void }> {
  const release = await stageSlots.acquire();
  const stage = idle.pop() ?? newStage();
  return {
    stage,
    giveBack: () => {
      idle.push(stage);
      release();
    },
  };
}

const CREATE_DIRECT = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT;

const roundUp = (n: number): number => Math.ceil(n / DIRECT_ALIGN) * DIRECT_ALIGN;

/** Copies `data` into `buffer` a stage at a time, each piece padded with zeros to a block: its file offset and the staged bytes. */
function* stagedPieces(data: Uint8Array, buffer: Uint8Array): Generator<{ at: number; staged: Uint8Array }> {
  for (let at = 0; at < data.length; at += STAGE) {
    const piece = data.subarray(at, at + STAGE);
    const padded = roundUp(piece.length);
    buffer.set(piece);
    buffer.fill(0, piece.length, padded);
    yield { at, staged: buffer.subarray(0, padded) };
  }
}

/** Whether an error says that O_DIRECT (or its alignment) is not accepted here. */
export function directRefused(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'EINVAL';
}

/**
 * Creates `path` exclusively (like flag 'wx') for direct writing; throws EINVAL where the file system does not
 * do direct I/O. Linux creates the file before it refuses O_DIRECT: that file (exclusively ours) is removed.
 */
export function openDirectSync(path: string, mode: number): number {
  try {
    return openSync(path, CREATE_DIRECT, mode);
  } catch (error) {
    if (directRefused(error)) rmSync(path, { force: true });
    throw error;
  }
}

/** openDirectSync for the main thread: an exclusive new file for writeDirect, or EINVAL (and no file left) where refused. */
export async function openDirect(path: string, mode: number): Promise<FileHandle> {
  try {
    return await open(path, CREATE_DIRECT, mode);
  } catch (error) {
    if (directRefused(error)) await rm(path, { force: true });
    throw error;
  }
}

/** writeDirectSync for a file opened by openDirect, without blocking this thread. */
export async function writeDirect(handle: FileHandle, data: Uint8Array): Promise<void> {
  const { stage: buffer, giveBack } = await borrowStage();
  try {
    for (const { at, staged } of stagedPieces(data, buffer)) await writeAll(handle, staged, at);
    await handle.truncate(data.length);
  } finally {
    giveBack();
  }
}

/**
 * The whole file at `path`, read with O_DIRECT (from the device, past the page cache) through a staging area
 * into a buffer of its own; throws EINVAL where the file system refuses direct reads. For objects read once
 * and cold, such as chunks: a buffered read first copies each into page-cache memory the kernel has to find.
 */
export async function readDirect(path: string): Promise<Buffer> {
  const handle = await open(path, constants.O_RDONLY | constants.O_DIRECT);
  try {
    const size = (await handle.stat()).size;
    const out = Buffer.allocUnsafeSlow(size);
    const { stage: buffer, giveBack } = await borrowStage();
    try {
      // A stage at a time; a read that comes back short ends the file (as it was when opened).
      let filled = 0;
      while (filled < size) {
        const want = Math.min(STAGE, roundUp(size - filled));
        const n = (await handle.read(buffer, 0, want, filled)).bytesRead;
        const take = Math.min(n, size - filled);
        out.set(buffer.subarray(0, take), filled);
        filled += take;
        if (n < want) break;
      }
      return filled === size ? out : out.subarray(0, filled);
    } finally {
      giveBack();
    }
  } finally {
    await handle.close();
  }
}

/** Writes all of `data` from offset 0 of the file opened by openDirectSync, and cuts the file to `data`'s length. */
export function writeDirectSync(fd: number, data: Uint8Array): void {
  for (const { at, staged } of stagedPieces(data, stage())) writeAllSync(fd, staged, at);
  ftruncateSync(fd, data.length);
}

/**
 * Whether the file at `path` holds exactly `data`, read with O_DIRECT (from the device, not the page cache) a
 * stage at a time to the end of the file, so that a longer file differs. Throws what opening or reading throws (EINVAL where
 * direct reads are refused).
 */
export function sameDirectSync(path: string, data: Uint8Array): boolean {
  const buffer = stage();
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECT);
  try {
    // Each read asks for a whole stage; a short one (not a whole number of blocks, or none) ends the file.
    for (let at = 0; ; at += STAGE) {
      let filled = 0;
      for (let n = 1; n > 0 && filled < STAGE && filled % DIRECT_ALIGN === 0; filled += n) n = readSync(fd, buffer, filled, STAGE - filled, at + filled);
      const want = data.subarray(at, at + STAGE);
      if (filled !== want.length || !Buffer.from(buffer.buffer, 0, filled).equals(want)) return false;
      if (filled < STAGE) return true;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * A new file written from start to end in pieces of any length, with direct I/O where the file system allows
 * it (else the usual way): pieces gather in an aligned staging area written a whole stage at a time, and
 * `end` writes the rest padded and cuts the file to its length. `hole` skips a run of zeros, leaving a hole
 * where it can (direct: when it starts and ends on a block boundary of the file).
 */
export class SequentialFile {
  #handle: FileHandle;
  #direct: boolean;
  readonly #path: string;
  #stage: { stage: Uint8Array; giveBack: () => void } | undefined;
  /** Bytes gathered in the stage; they belong at #at. */
  #filled = 0;
  #at = 0;

  private constructor(path: string, handle: FileHandle, direct: boolean) {
    this.#path = path;
    this.#handle = handle;
    this.#direct = direct;
  }

  /** Creates `path` exclusively (EEXIST when it exists). */
  static async create(path: string, mode: number): Promise<SequentialFile> {
    try {
      return new SequentialFile(path, await openDirect(path, mode), true);
    } catch (error) {
      if (!directRefused(error)) throw error;
    }
    return new SequentialFile(path, await open(path, 'wx', mode), false);
  }

  /** Whether the bytes go to the device directly. */
  get direct(): boolean {
    return this.#direct;
  }

  async write(data: Uint8Array): Promise<void> {
    if (!this.#direct) {
      await writeAll(this.#handle, data, this.#at);
      this.#at += data.length;
      return;
    }
    this.#stage ??= await borrowStage();
    for (let done = 0; done < data.length; ) {
      const n = Math.min(STAGE - this.#filled, data.length - done);
      this.#stage.stage.set(data.subarray(done, done + n), this.#filled);
      this.#filled += n;
      done += n;
      if (this.#filled === STAGE) await this.#flush();
    }
  }

  /** Skips `length` bytes of zeros. */
  async hole(length: number): Promise<void> {
    if (!this.#direct || (this.#filled === 0 && length % DIRECT_ALIGN === 0)) {
      this.#at += length;
      return;
    }
    const zeros = new Uint8Array(Math.min(length, STAGE));
    for (let done = 0; done < length; done += zeros.length) await this.write(length - done < zeros.length ? zeros.subarray(0, length - done) : zeros);
  }

  /** Writes what is staged and gives the file its full length; closes it. Flushed to the device with `sync`. */
  async end(options: { sync?: boolean } = {}): Promise<void> {
    try {
      const length = this.#at + this.#filled;
      await this.#flush();
      await this.#handle.truncate(length);
      if (options.sync) await this.#handle.datasync();
    } finally {
      await this.close();
    }
  }

  /** Closes the file as it is (after a failure: the caller removes it). */
  async close(): Promise<void> {
    this.#stage?.giveBack();
    this.#stage = undefined;
    await this.#handle.close();
  }

  /** Writes the staged bytes (padded to a block) at #at; a file system that refuses that is written the usual way from here on. */
  async #flush(): Promise<void> {
    const stage = this.#stage?.stage;
    if (!stage || this.#filled === 0) return;
    const length = this.#filled;
    const padded = roundUp(length);
    stage.fill(0, length, padded);
    try {
      await writeAll(this.#handle, stage.subarray(0, padded), this.#at);
    } catch (error) {
      if (!directRefused(error)) throw error;
      await this.#handle.close();
      this.#handle = await open(this.#path, 'r+');
      this.#direct = false;
      await writeAll(this.#handle, stage.subarray(0, length), this.#at);
    }
    this.#at += length;
    this.#filled = 0;
  }
}
