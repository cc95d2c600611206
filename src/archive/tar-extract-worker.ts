/**
 * Worker thread of `extractTarInWorker` and `extractArchiveInWorker`: writes the entries of a tar stream (its
 * pieces) or of a file archive stored as catalog and payload (the catalog, then its payload chunks), sent by
 * the parent and moved here, not copied. It acknowledges each piece once the parser asks for the next one,
 * and each chunk when it is first used, with the file bytes written since the last acknowledgement (for
 * progress); then sends the result, or the error.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { release } from '../lib/release.ts';
import { catalogEntries, type PayloadChunk } from './tar-assemble.ts';
import { extractEntries, extractTar, type ExtractInput, type ExtractWorkerData, type ExtractWorkerMessage } from './tar-extract.ts';
import { threadError } from './thread.ts';

const port = parentPort;
if (!port) throw new Error('tar-extract-worker.ts runs as a worker thread');
const input = workerData as ExtractWorkerData;

const inbox: ExtractInput[] = [];
let wake: (() => void) | undefined;
port.on('message', (m: ExtractInput) => {
  inbox.push(m);
  wake?.();
  wake = undefined;
});

async function receive(): Promise<ExtractInput> {
  while (inbox.length === 0) await new Promise<void>((resolve) => (wake = resolve));
  return inbox.shift() as ExtractInput;
}

function post(message: ExtractWorkerMessage): void {
  port?.postMessage(message);
}

let written = 0;
function ack(bytes: number): void {
  post({ type: 'ack', bytes, written });
  written = 0;
}

async function* pieces(first: Uint8Array): AsyncGenerator<Uint8Array> {
  let before: Uint8Array | undefined;
  for (let piece: Uint8Array | undefined = first; piece; ) {
    yield piece;
    ack(piece.length);
    // The parser asks for the next piece holding at most a view of this one's unread tail (copied when a record
    // spans two pieces), and extractTar writes what it is given before asking for more: nothing here sees the
    // piece before this one any more. Freed now: the pieces moved here are this thread's alone, and left to the
    // collector they piled up (peak RSS of the bench tree's restore: 297-343 MiB without, 250-295 MiB with).
    if (before) release(before);
    before = piece;
    const m = await receive();
    piece = 'piece' in m ? m.piece : undefined;
  }
}

async function* chunks(): AsyncGenerator<PayloadChunk> {
  for (;;) {
    const m = await receive();
    if (!('chunk' in m)) return;
    yield { index: m.chunk, data: Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength) };
  }
}

const options = {
  ...(input.owners !== undefined ? { owners: input.owners } : {}),
  onWarning: (message: string) => post({ type: 'warning', message }),
  onBytes: (bytes: number) => {
    written += bytes;
  },
};

async function run(): Promise<void> {
  const first = await receive();
  let result;
  if ('catalog' in first) {
    const text = Buffer.from(first.catalog.buffer, first.catalog.byteOffset, first.catalog.byteLength).toString('utf8');
    release(first.catalog);
    result = await extractEntries(catalogEntries(text, first.chunkEnds, chunks(), first.what, (chunk) => ack(chunk.data.length), first.ranges), input.target, options);
  } else {
    result = await extractTar('piece' in first ? pieces(first.piece) : (async function* () {})(), input.target, options);
  }
  post({ type: 'done', result, written });
}

run().catch((error: unknown) => port.postMessage(threadError(error)));
