/** What happened, as notification targets and matchers see it. */
export const SEVERITIES = ['info', 'notice', 'warning', 'error'] as const;
export type Severity = (typeof SEVERITIES)[number];

export interface NotificationEvent {
  severity: Severity;
  /** "verify", "prune", "gc", "backup", "sync", "test". */
  type: string;
  title: string;
  message: string;
  /** Milliseconds since the epoch. */
  time: number;
  fields: { datastore?: string; job?: string; upid?: string; [key: string]: string | undefined };
}
