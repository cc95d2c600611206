import { Thread } from './thread.ts';

/**
 * The size of the regular files under `root` (progress percent and ETA of a backup), summed on a thread of its
 * own while the backup runs: the walk costs no time on the thread that chunks and encodes. Resolves undefined
 * when stopped (the backup ended first) or when the walk failed; never rejects.
 */
export function treeSizeInWorker(root: string): { size: Promise<number | undefined>; stop: () => Promise<void> } {
  let total: number | undefined;
  const stop = new AbortController();
  const thread = new Thread<{ type: 'size'; total: number }>('./tree-size-worker.ts', root, 'The thread sizing the tree', stop.signal, (m) => (total = m.total));
  const size = thread
    .until(() => total !== undefined)
    .then(
      () => total,
      () => undefined,
    )
    .finally(() => thread.close());
  return {
    size,
    stop: async () => {
      stop.abort();
      await size;
    },
  };
}
