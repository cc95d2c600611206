/**
 * The `server` composition root: certificate, first-start admin, task manager, API over HTTPS, service status
 * file and logs, graceful stop on SIGTERM/SIGINT (running tasks aborted and recorded as such).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROUTES, createApiServer } from '../api/index.ts';
import { BackupSessions, ReaderSessions, autoUnlockMasterKey, ensureAdmin, ensureCertificate, notifier as makeNotifier, scheduledJobs, taskEvent, type AppContext } from '../app/index.ts';
import { JobStateStore, Scheduler, TaskManager, TaskStore, UploadLedger } from '../jobs/index.ts';
import { journalWriter, jsonFileLog, silentReporter, writeFileAtomic, type JsonLog } from '../lib/index.ts';
import type { IbsPaths } from '../config/index.ts';
import { toIbsError } from '../core/index.ts';

/** The services of the server process, as `status --services` lists them and the systemd unit aliases name them. */
const SERVICES = ['api', 'scheduler', 'worker', 'verifier', 'gc', 'sync', 'notify'];

export interface ServerOptions {
  paths: IbsPaths;
  makeContext(authId: string, signal?: AbortSignal): AppContext;
  host: string;
  port: number;
  adminPasswordFile?: string | undefined;
  /** Also write each service's log to the system journal, under the unit `ironcore-backup-<service>.service`. */
  journal?: boolean;
  out(line: string): void;
}

export interface RunningServer {
  port: number;
  fingerprint: string;
  stop(reason: string): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { paths } = options;
  for (const dir of [paths.configDir, paths.stateDir, paths.logDir]) await mkdir(dir, { recursive: true });
  // Each service's log is a file, and under systemd its journal too: `journalctl -u ironcore-backup-notify`
  // shows the notification service's entries (the unit names are aliases of ironcore-backup.service). The
  // API's line per request stays in its file (a push makes a hundred).
  const journal = options.journal ? journalWriter({ onError: (message) => options.out(message) }) : undefined;
  const serviceLog = (service: string): JsonLog =>
    jsonFileLog(
      join(paths.logDir, `${service}.log`),
      service,
      journal &&
        ((level, msg, fields = {}) => {
          if (level === 'debug' || (service === 'api' && msg === 'request')) return;
          const { task, ...rest } = fields;
          const detail = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
          journal.write({ unit: `ironcore-backup-${service}.service`, identifier: `ironcore-backup-${service}`, level, message: `${msg}${task !== undefined ? ` (task ${String(task)})` : ''}${detail}`, ...(task !== undefined ? { fields: { IBS_TASK: String(task) } } : {}) });
        }),
    );
  const apiLog = serviceLog('api');
  const workerLog = serviceLog('worker');
  const schedulerLog = serviceLog('scheduler');
  const notifyLog = serviceLog('notify');
  // Verify, GC and sync work runs in the worker pool; each has its own service log of task results.
  const serviceLogs: Record<string, JsonLog> = { verifier: serviceLog('verifier'), gc: serviceLog('gc'), sync: serviceLog('sync') };
  const serviceOf = (type: string): string => (type.startsWith('verif') ? 'verifier' : type === 'garbage_collection' ? 'gc' : type.startsWith('sync') ? 'sync' : 'worker');
  const notifier = makeNotifier(options.makeContext('root@pam'), (level, msg, fields) => notifyLog(level, msg, fields));
  const started = new Date().toISOString();
  const statusFile = join(paths.stateDir, 'services.json');
  // What `status --services` reads: a file it cannot write (a full disk) is logged; the server runs all the same.
  const writeStatus = async (state: 'running' | 'stopped', listen: string, reason?: string): Promise<void> => {
    const services = SERVICES.map((service) => ({ service, state, since: new Date().toISOString(), ...(reason ? { reason } : {}) }));
    await writeFileAtomic(statusFile, `${JSON.stringify({ pid: process.pid, started, listen, services }, null, 1)}\n`).catch((error: unknown) => {
      workerLog('error', `cannot record the services as ${state} in ${statusFile}`, { error: toIbsError(error).message });
    });
  };

  const cert = await ensureCertificate(paths.configDir);
  const admin = await ensureAdmin(options.makeContext('root@pam'), options.adminPasswordFile);
  if (admin?.password) options.out(`First start: created ${admin.userid} with password ${admin.password} (shown once; change it with "user passwd")`);
  else if (admin) options.out(`First start: created ${admin.userid} with the password from ${options.adminPasswordFile}`);

  // Server keys wrapped by a master key can be used once it is unlocked: from its unlock file now, else by an
  // administrator ("masterkey unlock"); until then the jobs that need them fail with KEY_LOCKED.
  const master = await autoUnlockMasterKey(options.makeContext('root@pam'));
  if (master.configured && master.unlocked) options.out(`master key ${master.fingerprint} unlocked from ${master['unlock-file']}`);
  else if (master.configured) {
    const line = `master key ${master.fingerprint} is locked (${master.reason}): jobs that use server keys fail until "ironcore-backup masterkey unlock --interactive"`;
    options.out(line);
    workerLog('warn', line);
  }

  const store = await TaskStore.open(paths.stateDir);
  let scheduler: Scheduler | undefined;
  const tasks = await TaskManager.start({
    store,
    slots: { verify: 1, garbage_collection: 1, prune: 1, backup: 4, syncjob: 4 },
    log: (level, message) => workerLog(level, message),
    // Tests shorten how often states the task index would not take are tried again (default 30 s).
    ...(/^\d{2,6}$/.test(process.env.IBS_TASK_RECORD_RETRY_MS ?? '') ? { retryMs: Number(process.env.IBS_TASK_RECORD_RETRY_MS) } : {}),
    onFinished: (record) => {
      (serviceLogs[serviceOf(record.type)] ?? workerLog)(record.state === 'ok' ? 'info' : record.state === 'warnings' ? 'warn' : 'error', `task ${record.state}`, { task: record.upid, type: record.type, id: record.id, status: record.status });
      const job = scheduler?.jobFor(record.upid);
      const mode = job?.notify ?? 'always';
      if (mode === 'never' || (mode === 'error' && record.state === 'ok')) return;
      // Sync results carry the run's summary line from the task log.
      const summary = record.type === 'syncjob' ? store.readLog(record.upid).then((l) => /summary: (.*)$/m.exec(l.text)?.[1], () => undefined) : Promise.resolve(undefined);
      // Nothing of it may end the server: a notification configuration that does not read, say, is logged.
      void summary
        .then((text) => {
          const event = taskEvent(record, job?.id, text);
          if (event) return notifier.send(event);
          return undefined;
        })
        .catch((error: unknown) => notifyLog('error', 'notification not sent', { task: record.upid, error: toIbsError(error).message }));
    },
  });
  workerLog('info', 'task manager started', { slots: tasks.workerStatus() });
  // The key that signs login tickets: 32 random bytes, made at the first start. One of another length (a
  // file cut short, an empty one: a key anyone could sign with) is replaced; tickets signed before then fail,
  // and their users log in again.
  const ticketKeyPath = join(paths.stateDir, 'ticket.key');
  let ticketKey = await readFile(ticketKeyPath).catch(() => undefined);
  if (ticketKey?.length !== 32) {
    if (ticketKey !== undefined) process.stderr.write(`ironcore-backup: ${ticketKeyPath} holds ${ticketKey.length} bytes, not 32: replaced by a new key (users log in again)\n`);
    ticketKey = randomBytes(32);
    await writeFileAtomic(ticketKeyPath, ticketKey, { mode: 0o600 });
  }
  const uploads = new UploadLedger(paths.stateDir);
  uploads.expire();
  const backups = new BackupSessions({ uploads });
  const readers = new ReaderSessions();
  const api = createApiServer({
    backups,
    readers,
    ticketKey,
    key: cert.key,
    cert: cert.cert,
    routes: ROUTES,
    auth: options.makeContext('root@pam').access,
    tasks,
    runJob: (jobId) => {
      if (!scheduler) throw new Error('scheduler not started');
      return scheduler.runNow(jobId);
    },
    makeContext: (authId, signal) => ({ ...options.makeContext(authId, signal), reporter: silentReporter }),
    log: apiLog,
  });
  const jobState = new JobStateStore(paths.stateDir);
  scheduler = new Scheduler({ tasks, state: jobState, jobs: () => scheduledJobs(options.makeContext('root@pam'), (job, error) => schedulerLog('error', 'job skipped: invalid configuration', { job, error: error.message })), log: (msg, fields) => schedulerLog('info', msg, fields) });
  const port = await api.listen(options.host, options.port);
  await api.listenAdminSocket(join(paths.stateDir, 'api.sock'));
  scheduler.start();
  const listen = `${options.host}:${port}`;
  await writeStatus('running', listen);
  apiLog('info', 'listening', { listen, fingerprint: cert.info.fingerprint });
  options.out(`ironcore-backup server listening on https://${listen} (TLS 1.3, HTTP/2)`);
  options.out(`certificate fingerprint: ${cert.info.fingerprint}`);
  if (journal) options.out(`service logs also go to the system journal: journalctl -u ironcore-backup-SERVICE (${SERVICES.join(', ')})`);

  let stopping: Promise<void> | undefined;
  const stop = (reason: string): Promise<void> =>
    (stopping ??= (async () => {
      apiLog('info', 'stopping', { reason });
      const schedulerDone = scheduler.stop();
      await tasks.shutdown(reason);
      await schedulerDone;
      await backups.close();
      await readers.closeAll();
      await api.close();
      store.close();
      jobState.close();
      uploads.close();
      // Notifications of the tasks just ended get a few seconds; retries still waiting are given up.
      await notifier.close();
      await writeStatus('stopped', listen, reason);
      workerLog('info', 'stopped', { reason });
      await journal?.close();
    })());
  return { port, fingerprint: cert.info.fingerprint, stop };
}
