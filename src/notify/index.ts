/**
 * notify: notification targets (webhook, sendmail, smtp) and matchers that route events to them. Secrets
 * come from a separate source and never appear in logs; deliveries retry transient failures with capped
 * exponential backoff and never throw into the caller. SMTP uses nodemailer (this folder's one dependency).
 */
export { SEVERITIES, type NotificationEvent, type Severity } from './event.ts';
export { matches, validateMatcher, type MatcherConfig } from './matcher.ts';
export { deliver, renderTemplate, type TargetConfig, type TargetSecrets, type DeliveryOptions } from './targets.ts';
export { Notifier, type NotificationConfigSource, type DeliveryReport } from './notifier.ts';
