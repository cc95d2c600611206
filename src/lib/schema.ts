/**
 * A small JSON schema subset for API input and output: each route declares its shapes as data, the server
 * validates input against them (400 naming the field and what was expected), and the route table test checks
 * every route has them.
 */
export type Schema =
  | { type: 'string'; pattern?: RegExp; minLength?: number; maxLength?: number; enum?: readonly string[]; description?: string; optional?: boolean }
  | { type: 'integer'; minimum?: number; maximum?: number; description?: string; optional?: boolean }
  | { type: 'boolean'; description?: string; optional?: boolean }
  | { type: 'array'; items: Schema; maxItems?: number; description?: string; optional?: boolean }
  | { type: 'object'; properties: Record<string, Schema>; additional?: boolean; description?: string; optional?: boolean }
  | { type: 'any'; description?: string; optional?: boolean };

export class SchemaError extends Error {
  readonly field: string;

  constructor(field: string, message: string) {
    super(`Invalid value for "${field}": ${message}`);
    this.name = 'SchemaError';
    this.field = field;
  }
}

/**
 * Checks `value` against `schema`; with `coerce`, strings are converted to integers and booleans (query
 * parameters arrive as strings). Returns the (coerced) value or throws SchemaError.
 */
export function validate(schema: Schema, value: unknown, field = 'input', coerce = false): unknown {
  switch (schema.type) {
    case 'any':
      return value;
    case 'string': {
      if (typeof value !== 'string') throw new SchemaError(field, `expected a string, got ${describe(value)}`);
      if (schema.minLength !== undefined && value.length < schema.minLength) throw new SchemaError(field, `expected at least ${schema.minLength} characters`);
      if (value.length > (schema.maxLength ?? 4096)) throw new SchemaError(field, `expected at most ${schema.maxLength ?? 4096} characters`);
      if (schema.enum && !schema.enum.includes(value)) throw new SchemaError(field, `expected one of ${schema.enum.join(', ')}`);
      if (schema.pattern && !schema.pattern.test(value)) throw new SchemaError(field, `"${value.slice(0, 80)}" does not match ${schema.pattern}`);
      return value;
    }
    case 'integer': {
      const n = coerce && typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new SchemaError(field, `expected an integer, got ${describe(value)}`);
      if (schema.minimum !== undefined && n < schema.minimum) throw new SchemaError(field, `expected at least ${schema.minimum}`);
      if (schema.maximum !== undefined && n > schema.maximum) throw new SchemaError(field, `expected at most ${schema.maximum}`);
      return n;
    }
    case 'boolean': {
      const b = coerce && typeof value === 'string' && ['1', '0', 'true', 'false'].includes(value) ? value === '1' || value === 'true' : value;
      if (typeof b !== 'boolean') throw new SchemaError(field, `expected a boolean, got ${describe(value)}`);
      return b;
    }
    case 'array': {
      const list = coerce && typeof value === 'string' ? [value] : value;
      if (!Array.isArray(list)) throw new SchemaError(field, `expected a list, got ${describe(value)}`);
      if (list.length > (schema.maxItems ?? 1000)) throw new SchemaError(field, `expected at most ${schema.maxItems ?? 1000} items`);
      return list.map((item, i) => validate(schema.items, item, `${field}[${i}]`, coerce));
    }
    case 'object': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new SchemaError(field, `expected an object, got ${describe(value)}`);
      const input = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const [key, sub] of Object.entries(schema.properties)) {
        const path = field === 'input' ? key : `${field}.${key}`;
        if (input[key] === undefined) {
          if (!sub.optional) throw new SchemaError(path, 'required');
          continue;
        }
        out[key] = validate(sub, input[key], path, coerce);
      }
      for (const key of Object.keys(input)) {
        if (!(key in schema.properties)) {
          if (!schema.additional) throw new SchemaError(field === 'input' ? key : `${field}.${key}`, `unknown parameter; expected one of ${Object.keys(schema.properties).join(', ') || 'none'}`);
          out[key] = input[key];
        }
      }
      return out;
    }
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'string' ? `"${value.slice(0, 40)}"` : typeof value;
}

/** The schema as plain JSON (regular expressions as their source), for the OpenAPI document. */
export function schemaToJson(schema: Schema): Record<string, unknown> {
  const { optional: _o, ...rest } = schema as Schema & { optional?: boolean };
  const out: Record<string, unknown> = { ...rest };
  if ('pattern' in rest && rest.pattern) out.pattern = rest.pattern.source;
  if (rest.type === 'array') out.items = schemaToJson(rest.items);
  if (rest.type === 'object') {
    out.properties = Object.fromEntries(Object.entries(rest.properties).map(([k, v]) => [k, schemaToJson(v)]));
    out.required = Object.entries(rest.properties).filter(([, v]) => !v.optional).map(([k]) => k);
    delete out.additional;
    out.additionalProperties = rest.additional ?? false;
  }
  if (rest.type === 'any') delete out.type;
  return out;
}
