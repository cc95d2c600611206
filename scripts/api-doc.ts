/** Prints docs/api.md from the route table, so the API reference cannot drift from the code (a test checks it). */
import { ROUTES } from '../src/api/index.ts';
import { ERROR_CODES } from '../src/core/index.ts';
import type { Schema } from '../src/lib/index.ts';

function describe(schema: Schema): string {
  switch (schema.type) {
    case 'string':
      return schema.enum ? schema.enum.join(' \\| ') : schema.pattern ? `string \`${schema.pattern.source.replaceAll('|', '\\|')}\`` : `string${schema.maxLength !== undefined ? ` ≤ ${schema.maxLength}` : ''}`;
    case 'integer':
      return `integer ${schema.minimum ?? ''}..${schema.maximum ?? ''}`;
    case 'array':
      return `list of ${describe(schema.items)}`;
    default:
      return schema.type;
  }
}

export function apiReference(): string {
  const out: string[] = [
    '# API reference',
    '',
    'Generated from the route table (`node scripts/api-doc.ts > docs/api.md`); a test keeps it in step. The',
    'server also serves this as an OpenAPI document at `GET /api2/json/openapi`.',
    '',
    'Every path is below `https://HOST:8007/api2/json`. Authenticate with the header',
    '`Authorization: IBSAPIToken=user@realm!token:SECRET`, or with a login ticket (`POST /access/ticket` with',
    '`username` and `password`; writes then need the `CSRFPreventionToken` header). GET and DELETE take their',
    'input as query parameters, POST and PUT as a JSON object; path parameters are part of the input. Answers',
    'are `{"data": ...}`; errors are `{"message", "code"}` with the HTTP status of the code:',
    '',
    '| code | HTTP | meaning |',
    '| --- | --- | --- |',
    ...Object.entries(ERROR_CODES).map(([code, v]) => `| ${code} | ${v.http} | ${v.help} |`),
    '',
  ];
  for (const r of ROUTES) {
    const p = r.permission;
    const permission =
      p.kind === 'privilege' ? `${p.privileges.join(' + ')} on the ACL path of the input` : p.kind === 'handler' ? p.description : p.kind === 'authenticated' ? 'any authenticated caller' : 'none (public)';
    out.push(`## ${r.method} ${r.path}`, '', r.summary, '', `Permission: ${permission}.`, '');
    const fields = Object.entries(r.input.properties);
    if (r.body === 'binary') out.push('Body: binary (see docs/format.md, chunk frames).', '');
    if (fields.length > 0) {
      out.push('| input | type | required |', '| --- | --- | --- |');
      for (const [name, schema] of fields) out.push(`| \`${name}\` | ${describe(schema)} | ${schema.optional ? '' : 'yes'} |`);
      out.push('');
    }
  }
  return out.join('\n');
}

if (import.meta.main) process.stdout.write(apiReference());
