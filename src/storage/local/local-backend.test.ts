import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runConformanceSuite } from '../conformance.ts';
import { LocalBackend } from './local-backend.ts';

runConformanceSuite('local', async () => {
  const root = await mkdtemp(join(tmpdir(), 'ibs-local-'));
  let noSpace = false;
  const backend = new LocalBackend({
    root,
    injectWriteError: () => (noSpace ? Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }) : undefined),
  });
  return { backend, setNoSpace: (on) => (noSpace = on), cleanup: () => rm(root, { recursive: true, force: true }) };
});
