/** cli: the `ironcore-backup` command line, a thin layer over app/ (parsing, rendering, exit codes). */
export { runCli, type CliDeps } from './main.ts';
export { COMMANDS, REMOTE_OPTIONS, usageOf, type Command, type OptionSpec } from './commands.ts';
export { readPassphrase } from './passphrase.ts';
