import { hostname } from 'node:os';
import { IbsError, toIbsError, type ErrorCode } from '../core/index.ts';
import { abortableSleep, type ProgressEvent } from '../lib/index.ts';
import { TaskStore, type TaskFilter, type TaskRecord, type TaskState } from './task-store.ts';
import { formatUpid } from './upid.ts';

/** What a running task gets: its id, an abort signal, and a log. Domain code reports through it. */
export interface TaskContext {
  upid: string;
  signal: AbortSignal;
  log(message: string): void;
  warn(message: string): void;
  progress(event: ProgressEvent): void;
}

export interface TaskSpec {
  /** Worker type: "backup", "verify", "prune", "garbage_collection", "syncjob", … */
  type: string;
  /** What it works on (a datastore, a job id); may be "". */
  id: string;
  authId: string;
}

export interface TaskManagerOptions {
  store: TaskStore;
  node?: string;
  /** Tasks of a type that may run at once; more wait in order. */
  slots?: Record<string, number>;
  defaultSlots?: number;
  /** Called once for every task that has ended (notifications hook here). Must not throw. */
  onFinished?: (record: TaskRecord) => void;
  /** Hears what the manager could not do (a task index it cannot write: a full disk), and when it could again. */
  log?: (level: 'info' | 'error', message: string) => void;
  /** How often states that could not be recorded are tried again (default 30 s). */
  retryMs?: number;
}

interface Live {
  record: TaskRecord;
  controller: AbortController;
  warnings: number;
  progress?: ProgressEvent;
  logChain: Promise<void>;
  done: Promise<TaskRecord>;
}

interface Waiting {
  upid: string;
  start: () => void;
}

/**
 * Runs long operations as tasks: each gets a UPID, a log file that ends in `TASK OK`,
 * `TASK WARNINGS: <n>` or `TASK ERROR: <message>`, a row in the task index, live progress and an abort
 * handle. Tasks beyond a type's slots wait in order. At start, tasks that a previous process left running
 * are marked failed ("server stopped unexpectedly").
 */
export class TaskManager {
  readonly store: TaskStore;
  readonly #node: string;
  readonly #slots: Record<string, number>;
  readonly #defaultSlots: number;
  readonly #onFinished: ((record: TaskRecord) => void) | undefined;
  readonly #live = new Map<string, Live>();
  readonly #running = new Map<string, number>();
  readonly #queues = new Map<string, Waiting[]>();
  readonly #pstart = Math.floor(performance.timeOrigin / 1000);
  readonly #log: (level: 'info' | 'error', message: string) => void;
  readonly #retryMs: number;
  /** States the task index would not take (its disk full), by UPID: answered from here, written when it can. */
  readonly #unsaved = new Map<string, { state: TaskState; status?: string; endtime?: number; code?: ErrorCode }>();
  #retry: NodeJS.Timeout | undefined;
  #counter = 0;
  #closing = false;

  private constructor(options: TaskManagerOptions) {
    this.store = options.store;
    this.#node = (options.node ?? hostname().split('.')[0] ?? 'localhost').replace(/[^A-Za-z0-9.-]/g, '-') || 'localhost';
    this.#slots = options.slots ?? {};
    this.#defaultSlots = options.defaultSlots ?? 4;
    this.#onFinished = options.onFinished;
    this.#log = options.log ?? ((_, m) => process.stderr.write(`ironcore-backup: ${m}\n`));
    this.#retryMs = options.retryMs ?? 30_000;
  }

  /**
   * Records a task's state in the index. The index is bookkeeping: when it cannot be written (the state
   * directory's disk is full), the task goes on and ends all the same, its state is answered from memory and
   * written once the index takes it (tried again every `retryMs`); a server that stops before then leaves
   * the task "running" in the index, which the next start marks as stopped unexpectedly.
   */
  #record(upid: string, state: TaskState, status?: string, code?: ErrorCode): void {
    const ended = state !== 'queued' && state !== 'running';
    const change = { state, ...(status !== undefined ? { status } : {}), ...(ended ? { endtime: Math.floor(Date.now() / 1000) } : {}), ...(code ? { code } : {}) };
    try {
      this.store.setState(upid, state, status, change.endtime, code);
      this.#unsaved.delete(upid);
      return;
    } catch (error) {
      this.#log('error', `${toIbsError(error).message}; kept in memory and tried again every ${Math.max(1, Math.round(this.#retryMs / 1000))} s`);
    }
    this.#unsaved.set(upid, change);
    this.#retry ??= setInterval(() => this.#flush(), this.#retryMs).unref();
  }

  /** Writes the states the index did not take before, in order, while it takes them. */
  #flush(): void {
    for (const [upid, c] of this.#unsaved) {
      try {
        this.store.setState(upid, c.state, c.status, c.endtime, c.code);
      } catch {
        return;
      }
      this.#unsaved.delete(upid);
    }
    clearInterval(this.#retry);
    this.#retry = undefined;
    this.#log('info', 'the task index takes states again: all recorded');
  }

  /** A record of the index with the state it would not take, if any. */
  #withUnsaved(record: TaskRecord): TaskRecord {
    const c = this.#unsaved.get(record.upid);
    return c ? { ...record, ...c } : record;
  }

  static async start(options: TaskManagerOptions): Promise<TaskManager> {
    const manager = new TaskManager(options);
    await manager.#recover();
    return manager;
  }

  async #recover(): Promise<void> {
    for (const task of this.store.unfinishedOf(process.pid)) {
      let alive = false;
      try {
        process.kill(task.pid, 0);
        alive = task.node === this.#node;
      } catch {
        alive = false;
      }
      if (alive) continue;
      await this.store.appendLog(task.upid, `${stamp()}: TASK ERROR: server stopped unexpectedly\n`).catch(() => {});
      this.#record(task.upid, 'error', 'server stopped unexpectedly');
    }
  }

  /** Starts (or queues) a task; returns its UPID at once and a promise of its final record. */
  spawn(spec: TaskSpec, fn: (task: TaskContext) => Promise<unknown>): { upid: string; done: Promise<TaskRecord> } {
    if (this.#closing) throw new IbsError('UNAVAILABLE', 'The server is shutting down: no new tasks');
    const starttime = Math.floor(Date.now() / 1000);
    const u = { node: this.#node, pid: process.pid, pstart: this.#pstart, counter: ++this.#counter, starttime, ...spec };
    const upid = formatUpid(u);
    const controller = new AbortController();
    const record: TaskRecord = { upid, type: spec.type, id: spec.id, authId: spec.authId, starttime, state: 'queued', pid: process.pid, node: this.#node };
    let resolveDone!: (r: TaskRecord) => void;
    const live: Live = { record, controller, warnings: 0, logChain: Promise.resolve(), done: new Promise((r) => (resolveDone = r)) };
    this.#live.set(upid, live);
    const append = (line: string): void => {
      live.logChain = live.logChain.then(() => this.store.appendLog(upid, `${stamp()}: ${line}\n`)).catch(() => {});
    };
    const context: TaskContext = {
      upid,
      signal: controller.signal,
      log: (message) => append(message),
      warn: (message) => {
        live.warnings++;
        append(`WARN: ${message}`);
      },
      progress: (event) => {
        live.progress = event;
      },
    };
    const run = async (): Promise<void> => {
      this.#running.set(spec.type, (this.#running.get(spec.type) ?? 0) + 1);
      record.state = 'running';
      this.#record(upid, 'running');
      let status: string;
      let finalState: TaskRecord['state'];
      let code: ErrorCode | undefined;
      try {
        if (controller.signal.aborted) throw controller.signal.reason;
        await fn(context);
        if (live.warnings > 0) {
          finalState = 'warnings';
          status = `WARNINGS: ${live.warnings}`;
        } else {
          finalState = 'ok';
          status = 'OK';
        }
      } catch (error) {
        const e = toIbsError(error);
        finalState = controller.signal.aborted ? 'aborted' : 'error';
        status = controller.signal.aborted ? `aborted: ${e.message}` : e.message;
        code = controller.signal.aborted ? 'ABORTED' : e.code;
      }
      append(`TASK ${status === 'OK' ? 'OK' : status.startsWith('WARNINGS') ? status : `ERROR: ${status}`}`);
      await live.logChain;
      // Only now, with the last log line written and the index updated, does the task count as ended.
      this.#record(upid, finalState, status, code);
      record.state = finalState;
      record.status = status;
      if (code) record.code = code;
      record.endtime = Math.floor(Date.now() / 1000);
      this.#running.set(spec.type, (this.#running.get(spec.type) ?? 1) - 1);
      this.#live.delete(upid);
      resolveDone(record);
      try {
        this.#onFinished?.(record);
      } catch {
        /* a hook must not break task bookkeeping */
      }
      this.#startNext(spec.type);
    };
    try {
      this.store.create(u, upid, 'queued');
    } catch (error) {
      // Not recorded (a full disk): no task, and nothing here waits for one.
      this.#live.delete(upid);
      throw error;
    }
    append(`starting task ${upid}`);
    if ((this.#running.get(spec.type) ?? 0) < this.#limit(spec.type)) void run();
    else {
      const queue = this.#queues.get(spec.type) ?? [];
      queue.push({ upid, start: () => void run() });
      this.#queues.set(spec.type, queue);
    }
    return { upid, done: live.done };
  }

  #limit(type: string): number {
    return this.#slots[type] ?? this.#defaultSlots;
  }

  #startNext(type: string): void {
    const queue = this.#queues.get(type);
    while (queue && queue.length > 0 && (this.#running.get(type) ?? 0) < this.#limit(type)) (queue.shift() as Waiting).start();
  }

  /** Requests a task to stop; it ends as "aborted". False when it is not running here. */
  abort(upid: string, reason = 'stopped by request'): boolean {
    const live = this.#live.get(upid);
    if (!live) return false;
    live.controller.abort(new IbsError('ABORTED', reason));
    const queue = this.#queues.get(live.record.type);
    const i = queue?.findIndex((w) => w.upid === upid) ?? -1;
    if (queue && i >= 0) (queue.splice(i, 1)[0] as Waiting).start(); // runs at once and ends as aborted
    return true;
  }

  status(upid: string): TaskRecord & { progress?: ProgressEvent } {
    const live = this.#live.get(upid);
    if (live) return { ...this.store.get(upid), ...live.record, ...(live.progress ? { progress: live.progress } : {}) };
    return this.#withUnsaved(this.store.get(upid));
  }

  /** Tasks of the index, newest first; a state the index would not take yet is answered from memory, filter included. */
  list(filter: TaskFilter = {}): TaskRecord[] {
    if (this.#unsaved.size === 0) return this.store.list(filter);
    // The index still has the state before: it is asked without the state filter, which applies here.
    const { state, limit, ...rest } = filter;
    const records = this.store.list(state === undefined ? filter : rest).map((r) => this.#withUnsaved(r));
    if (state === undefined) return records;
    const kept = records.filter((r) => (state === 'finished' ? r.state !== 'queued' && r.state !== 'running' : r.state === state));
    return limit === undefined ? kept : kept.slice(0, limit);
  }

  /** Per worker type: slots, running and queued tasks. */
  workerStatus(): Array<{ type: string; slots: number; running: number; queued: number }> {
    const types = new Set([...Object.keys(this.#slots), ...this.#running.keys(), ...this.#queues.keys()]);
    return [...types].sort().map((type) => ({ type, slots: this.#limit(type), running: this.#running.get(type) ?? 0, queued: this.#queues.get(type)?.length ?? 0 }));
  }

  /** The log as it grows: yields new text until the task has ended (or the signal aborts). */
  async *follow(upid: string, options: { signal?: AbortSignal; intervalMs?: number } = {}): AsyncGenerator<string> {
    let offset = 0;
    for (;;) {
      const finished = !['queued', 'running'].includes(this.status(upid).state);
      const { text, size } = await this.store.readLog(upid, { start: offset });
      offset = size;
      if (text) yield text;
      if (finished) return;
      await abortableSleep(options.intervalMs ?? 200, options.signal);
    }
  }

  /** Aborts every task (recorded as aborted, with the reason) and waits until all have ended. */
  async shutdown(reason = 'server shutting down'): Promise<void> {
    this.#closing = true;
    const pending = [...this.#live.values()].map((l) => l.done);
    for (const upid of [...this.#live.keys()]) this.abort(upid, reason);
    await Promise.all(pending);
    if (this.#unsaved.size > 0) this.#flush();
    clearInterval(this.#retry);
  }
}

function stamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}
