/**
 * config: configuration files (section format, lock, digest, atomic writes) and where files live. Secrets go
 * to separate 0600 files and are never logged.
 */
export { SectionConfig, parseSections, formatSections, type Section, type ConfigSnapshot } from './section-config.ts';
export { resolvePaths, type IbsPaths } from './paths.ts';
export { DatastoreRegistry, type DatastoreConfig } from './datastore-config.ts';
export { AccessConfig, type UserRecord, type TokenRecord } from './access.ts';
export { JobsConfig, checkConcurrentSnapshots, checkVerifyWindow, type VerifyJobConfig, type PruneJobConfig, type SyncJobConfig } from './jobs-config.ts';
export { RemotesConfig, checkRemote, type RemoteConfig } from './remotes-config.ts';
export { SecretsFile } from './secrets-file.ts';
export { ServerKeys, type ServerKeyInfo } from './server-keys.ts';
export { MasterKey, type MasterKeyConfig, type MasterKeyStatus } from './master-key.ts';
export { NotificationsConfig, type InvalidSetting, type TargetType } from './notifications-config.ts';
