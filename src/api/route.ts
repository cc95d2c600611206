import type { AppContext, BackupSessions, ReaderSessions, TaskManager } from '../app/index.ts';
import type { AclEntry, Privilege } from '../core/index.ts';
import type { Schema } from '../lib/index.ts';

/** What a handler gets besides its validated input. */
export interface ApiRequest {
  authId: string;
  acl: AclEntry[];
  ctx: AppContext;
  tasks: TaskManager;
  backups: BackupSessions;
  readers: ReaderSessions;
  /** Starts a configured job now through the scheduler (so its state and notifications follow); returns a UPID. */
  runJob?: (jobId: string) => Promise<string>;
  /** The raw request body, for routes with `body: 'binary'`, in the pieces it arrived in. */
  body?: readonly Buffer[];
  signal: AbortSignal;
}

export type Permission =
  | { kind: 'public' }
  | { kind: 'authenticated' }
  /** Any of `privileges` on the ACL path computed from the input. */
  | { kind: 'privilege'; path: (input: Record<string, unknown>) => string; privileges: Privilege[] }
  /** The handler filters or checks itself (say, lists only what the caller may see); described for docs. */
  | { kind: 'handler'; description: string };

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Below /api2/json, with {param} placeholders: "/admin/datastore/{store}/snapshots". */
  path: string;
  summary: string;
  /** Path parameters, query (GET/DELETE) or body (POST/PUT) as one object. */
  input: Extract<Schema, { type: 'object' }>;
  output: Schema;
  permission: Permission;
  /** "json" (default; POST/PUT bodies are the input) or "binary" (the input is path + query; the body is raw). */
  body?: 'json' | 'binary';
  /** "json" (default: `{ data }`) or "binary" (the handler returns a Buffer, sent as it is). */
  response?: 'json' | 'binary';
  /** Largest accepted body; default 1 MiB. */
  maxBodyBytes?: number;
  handler(req: ApiRequest, input: Record<string, unknown>): Promise<unknown>;
}
