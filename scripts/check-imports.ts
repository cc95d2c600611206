/**
 * Checks that every relative import under src/ follows the layer order of DESIGN.md: a folder imports only
 * from itself and the folders its row lists. Exits 1 and names each offending import. Test files
 * (`*.test.ts`) are composition roots like bin/: they may assemble real parts from any layer.
 */
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';

const ALLOWED: Record<string, string[]> = {
  lib: [],
  core: ['lib'],
  storage: ['core', 'lib'],
  datastore: ['storage', 'core', 'lib'],
  client: ['core', 'lib'],
  archive: ['core', 'lib'],
  sync: ['datastore', 'client', 'core', 'lib'],
  jobs: ['sync', 'datastore', 'core', 'lib'],
  config: ['core', 'lib'],
  notify: ['core', 'lib'],
  app: ['notify', 'config', 'jobs', 'sync', 'client', 'datastore', 'archive', 'storage', 'core', 'lib'],
  api: ['app', 'client', 'core', 'lib'],
  cli: ['app', 'client', 'core', 'lib'],
  web: ['app', 'client', 'core', 'lib'],
  bin: ['*'],
};

const src = resolve(import.meta.dirname, '..', 'src');
const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

async function* files(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(full);
    else if (entry.name.endsWith('.ts')) yield full;
  }
}

function layerOf(path: string): string {
  return relative(src, path).split(sep)[0] ?? '';
}

const problems: string[] = [];
for await (const file of files(src)) {
  const layer = layerOf(file);
  const allowed = ALLOWED[layer];
  if (!allowed) {
    problems.push(`${relative(src, file)}: folder "${layer}" is not a layer of DESIGN.md`);
    continue;
  }
  const text = await readFile(file, 'utf8');
  for (const match of text.matchAll(IMPORT_RE)) {
    const spec = match[1] ?? match[2] ?? '';
    if (!spec.startsWith('.')) continue;
    if (!spec.endsWith('.ts')) problems.push(`${relative(src, file)}: import "${spec}" lacks the .ts extension`);
    const target = resolve(dirname(file), spec);
    if (!target.startsWith(src + sep)) {
      problems.push(`${relative(src, file)}: import "${spec}" leaves src/`);
      continue;
    }
    const targetLayer = layerOf(target);
    const isTest = file.endsWith('.test.ts');
    if (targetLayer !== layer && !allowed.includes('*') && !allowed.includes(targetLayer) && !isTest) {
      problems.push(`${relative(src, file)}: layer "${layer}" may not import from "${targetLayer}" ("${spec}"); allowed: ${allowed.join(', ') || 'node only'}`);
    }
  }
}
if (problems.length > 0) {
  console.error(`Import direction check failed (${problems.length}):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log('Import direction check: ok');
