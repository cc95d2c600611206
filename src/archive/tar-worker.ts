/**
 * Worker thread of `createArchiveStreamInWorker`: runs `createArchiveStream` over a tree and sends its payload
 * to the parent in batches of a few large buffers, each moved (not copied) to the parent. Files are read
 * straight into those buffers. The parent
 * acknowledges each batch once it has consumed it; this thread waits while more than `MAX_IN_FLIGHT` bytes are
 * unacknowledged.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { movable } from '../lib/index.ts';
import { CatalogIndex } from './catalog.ts';
import { createArchiveStream, type ReusePiece, type TarWorkerData, type TarWorkerMessage } from './tar-create.ts';
import { threadError } from './thread.ts';

/** Bytes of a batch buffer: the stream's many small records are packed into buffers of this size. */
const BATCH = 2 * 1024 * 1024;
/** Unacknowledged bytes at most (a reference to previous chunks weighs as much as a small file). */
const MAX_IN_FLIGHT = 8 * 1024 * 1024;
const PIECE_WEIGHT = 4096;

const port = parentPort;
if (!port) throw new Error('tar-worker.ts runs as a worker thread');
const input = workerData as TarWorkerData;

let inFlight = 0;
let waiting: (() => void) | undefined;
port.on('message', (m: { ack: number }) => {
  inFlight -= m.ack;
  if (waiting && inFlight <= MAX_IN_FLIGHT) {
    waiting();
    waiting = undefined;
  }
});

function post(message: TarWorkerMessage, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(message, transfer);
}

async function run(): Promise<void> {
  let read = 0;
  let pieces: Array<Uint8Array | ReusePiece> = [];
  let weight = 0;
  let current: Buffer | undefined;
  let used = 0;

  /** Ends the batch buffer being filled (shrunk to what it holds) and adds it to the batch. */
  const seal = (): void => {
    if (!current || used === 0) return;
    const memory = (current.buffer as ArrayBuffer).transfer(used);
    pieces.push(new Uint8Array(memory));
    current = undefined;
    used = 0;
  };
  const send = async (): Promise<void> => {
    seal();
    if (pieces.length === 0) return;
    inFlight += weight;
    post({ type: 'pieces', pieces, bytes: read, weight }, pieces.flatMap((p) => (p instanceof Uint8Array ? [p.buffer as ArrayBuffer] : [])));
    pieces = [];
    weight = 0;
    read = 0;
    if (inFlight > MAX_IN_FLIGHT) await new Promise<void>((resolve) => (waiting = resolve));
  };
  /** The free space of the batch buffer (a new one when too little is left): files are read straight into it. */
  const allocate = (size: number): Buffer => {
    if (current && current.length - used < size) seal();
    current ??= Buffer.allocUnsafeSlow(Math.max(BATCH, size));
    return current.subarray(used, used + size);
  };
  const tar = createArchiveStream(input.root, {
    excludes: input.excludes,
    previous: input.previous ? { catalog: new CatalogIndex(input.previous.catalog), payloadChunkEnds: input.previous.payloadChunkEnds } : undefined,
    onWarning: (message) => post({ type: 'warning', message }),
    onBytes: (bytes) => {
      read += bytes;
    },
    allocate,
  });

  for (const piece of tar.stream) {
    if (!Buffer.isBuffer(piece)) {
      seal();
      pieces.push(piece);
      weight += PIECE_WEIGHT;
      if (weight >= BATCH) await send();
      continue;
    }
    // The stream reads every byte it yields through allocate: the piece is the next part of the batch buffer.
    if (!current || piece.buffer !== current.buffer || piece.byteOffset !== current.byteOffset + used) {
      throw new Error('tar-worker: the stream yielded data it did not read through allocate');
    }
    weight += piece.length;
    used += piece.length;
    if (used === current.length) seal();
    if (weight >= BATCH) await send();
  }
  await send();
  // The catalog's buffers are this thread's alone: they move, unused tails and all, rather than being copied.
  const catalog = tar.result.catalog.pieces().map((p) => movable(p, true));
  post({ type: 'end', files: tar.result.files, bytes: tar.result.bytes, count: tar.result.catalog.count, catalog }, catalog.map((p) => p.buffer));
}

run().catch((error: unknown) => port.postMessage(threadError(error)));
