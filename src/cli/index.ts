/** cli: the `ironcore-backup` command line, a thin layer over app/ (parsing, rendering, exit codes). */
export { runCli, type CliDeps } from './main.ts';
export { COMMANDS, type Command } from './commands.ts';
