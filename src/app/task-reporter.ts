import { formatBytes } from '../lib/index.ts';
import type { Reporter } from '../lib/index.ts';
import type { TaskContext } from '../jobs/index.ts';

/** Reports of a use case running as a task go to the task's log and live progress. */
export function taskReporter(task: TaskContext): Reporter {
  let lastLogged = 0;
  return {
    info: (m) => task.log(m),
    warn: (m) => task.warn(m),
    progress: (e) => {
      task.progress(e);
      const now = Date.now();
      if (now - lastLogged > 10_000) {
        lastLogged = now;
        task.log(`progress: ${e.phase} ${e.unit === 'bytes' ? formatBytes(e.done) : e.done}${e.total ? ` of ${e.unit === 'bytes' ? formatBytes(e.total) : e.total}` : ''}`);
      }
    },
  };
}
