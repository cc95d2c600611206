import { IbsError } from '../core/index.ts';

/**
 * Exclude patterns, matched against paths relative to the archive root ("dir/sub/file"):
 * `*` any run of characters but "/", `?` one such character, `**` anything including "/"; a pattern without
 * "/" matches the last component at any depth; a leading "/" anchors it at the root; a trailing "/" matches
 * directories only.
 */
export interface ExcludeMatcher {
  (path: string, isDir: boolean): boolean;
}

function toRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
        if (glob[i + 1] === '/') i++;
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function compileExcludes(patterns: readonly string[]): ExcludeMatcher {
  const rules = patterns.map((raw) => {
    if (raw.trim() === '' || raw.includes('\0')) throw new IbsError('INVALID_ARGUMENT', `Invalid exclude pattern ${JSON.stringify(raw)}: expected a non-empty glob such as "*.tmp" or "/cache/"`);
    let pattern = raw;
    const dirOnly = pattern.endsWith('/');
    if (dirOnly) pattern = pattern.slice(0, -1);
    const anchored = pattern.startsWith('/');
    if (anchored) pattern = pattern.slice(1);
    const basenameOnly = !anchored && !pattern.includes('/');
    return { re: toRegExp(pattern), dirOnly, basenameOnly };
  });
  return (path, isDir) =>
    rules.some((rule) => {
      if (rule.dirOnly && !isDir) return false;
      const subject = rule.basenameOnly ? (path.split('/').pop() ?? path) : path;
      return rule.re.test(subject);
    });
}
