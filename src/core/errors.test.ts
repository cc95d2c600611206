import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { IbsError, fileSystemError, toIbsError } from './errors.ts';

/** A real failed call's error (what Node gives: code, errno, syscall, path), not one made up here. */
async function failedOpen(path: string): Promise<NodeJS.ErrnoException> {
  return open(path, 'r').then(
    () => assert.fail(`${path} opened`),
    (error: unknown) => error as NodeJS.ErrnoException,
  );
}

test('fileSystemError: a failed call becomes the IbsError of its errno, saying what could not be done and why', async () => {
  const missing = await failedOpen('/nonexistent/ibs-errors-test');
  const e = fileSystemError(missing, 'Cannot restore "a/b" into "/srv"');
  assert.ok(e instanceof IbsError);
  assert.equal(e.code, 'NOT_FOUND');
  assert.equal(e.message, 'Cannot restore "a/b" into "/srv": no such file or directory (ENOENT)');
  assert.equal(e.cause, missing);
  const full = fileSystemError(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' }), 'Cannot write "x"') as IbsError;
  assert.deepEqual([full.code, full.message, full.exitCode], ['NO_SPACE', 'Cannot write "x": no space left on device (ENOSPC)', 10]);
  const pipe = fileSystemError(Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32, syscall: 'write' }), 'Cannot write to standard output') as IbsError;
  assert.deepEqual([pipe.code, pipe.message], ['ABORTED', 'Cannot write to standard output: broken pipe (EPIPE)']);
});

test('fileSystemError: IbsErrors and errors of no failed call come back as they are; other error numbers say what failed, as INTERNAL', () => {
  const ibs = new IbsError('CORRUPT', 'chunk damaged');
  assert.equal(fileSystemError(ibs, 'x'), ibs);
  const plain = new Error('boom');
  assert.equal(fileSystemError(plain, 'x'), plain);
  const node = Object.assign(new Error('aborted'), { code: 'ABORT_ERR' });
  assert.equal(fileSystemError(node, 'x'), node);
  const io = fileSystemError(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', errno: -5 }), 'Cannot restore "a"') as IbsError;
  assert.deepEqual([io.code, io.message], ['INTERNAL', 'Cannot restore "a": i/o error (EIO)']);
});

test('toIbsError: a full disk, a refused permission or too many open files get their codes; a missing file nobody named stays INTERNAL', async () => {
  const errno = (code: string, errnoNumber: number): Error => Object.assign(new Error(`${code}: something, write`), { code, errno: errnoNumber });
  assert.equal(toIbsError(errno('ENOSPC', -28)).code, 'NO_SPACE');
  assert.equal(toIbsError(errno('EDQUOT', -122)).code, 'NO_SPACE');
  assert.equal(toIbsError(errno('EACCES', -13)).code, 'PERMISSION_DENIED');
  assert.equal(toIbsError(errno('EMFILE', -24)).code, 'UNAVAILABLE');
  const missing = toIbsError(await failedOpen('/nonexistent/ibs-errors-test'));
  assert.equal(missing.code, 'INTERNAL');
  assert.match(missing.message, /ENOENT: no such file or directory, open '\/nonexistent\/ibs-errors-test'/);
  assert.equal(toIbsError(new Error('boom')).code, 'INTERNAL');
});
