import { runConformanceSuite } from '../conformance.ts';
import { StorageError } from '../backend.ts';
import { MemoryBackend } from './memory-backend.ts';

runConformanceSuite('memory', async () => {
  let noSpace = false;
  const backend = new MemoryBackend({ injectWriteError: () => (noSpace ? new StorageError('no-space', 'injected: memory full') : undefined) });
  return { backend, setNoSpace: (on) => (noSpace = on), cleanup: async () => {} };
});
