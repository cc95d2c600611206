import { readFile, stat } from 'node:fs/promises';

/** A file's identity and state as stat gives it: any write, rename over it or replacement changes it. */
function identity(s: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

/** How long after its last change a file's stat is trusted to show the next one (see readTextCached). */
const SETTLE_MS = 2000;

const texts = new Map<string, { identity: string; text: string }>();

/**
 * The text of a small file that is read far more often than it changes (the server reads the user, token and
 * ACL files on every request, a push makes hundreds): one stat when it is unchanged, instead of open, fstat,
 * read and close. Unchanged means the same device, inode, size, modification and change times; a file
 * changed less than 2 s before it was read is read again every time, because the clock that stamps those
 * times moves in steps of milliseconds, and a second write within one step would leave them as they were
 * (git's "racily clean" entries, handled the same way). With `fresh`, the file itself is read whatever the
 * cache holds (an update under the file's lock starts from exactly what is there). Fails as `readFile` and
 * `stat` do (ENOENT when missing).
 */
export async function readTextCached(path: string, options: { fresh?: boolean } = {}): Promise<string> {
  if (options.fresh) return readFile(path, 'utf8');
  let now: string;
  let changedMs: number;
  try {
    const s = await stat(path, { bigint: true });
    now = identity(s);
    changedMs = Number((s.mtimeNs > s.ctimeNs ? s.mtimeNs : s.ctimeNs) / 1_000_000n);
  } catch (error) {
    texts.delete(path);
    throw error;
  }
  const hit = texts.get(path);
  if (hit?.identity === now) return hit.text;
  const text = await readFile(path, 'utf8');
  // Read after the stat: a change in between leaves newer text under the older identity, which the next stat
  // no longer matches, so it is read again then.
  if (changedMs < Date.now() - SETTLE_MS) texts.set(path, { identity: now, text });
  else texts.delete(path);
  return text;
}
