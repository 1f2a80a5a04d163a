// `nbd-tunnel check`: the commander side. It takes the source's flags, so that it runs with the
// very command line (or --config) of the source it checks; it listens on nothing. Bad flags exit 2,
// a failed step 1.
import type { Command } from 'commander';
import { ConfigError, type SourceConfig, type SourceFlags } from '../config.js';
import { addSourceOptions, loadSourceConfig } from '../proxy-options.js';
import { runCheck } from './run.js';
import { formatStep } from './step.js';

type Fail = (error: Error, status: number) => never;

export function addCheckCommand(program: Command, fail: Fail): void {
  addSourceOptions(
    program
      .command('check')
      .description(
        "check a source's setup against its destination, carrying nothing: TLS, the upgrade, and each route (known there, allowed for this client, its socket listened on); takes the source's flags, listens on nothing",
      ),
  ).action(async (flags: SourceFlags, command: Command) => {
    let config: SourceConfig;
    try {
      config = loadSourceConfig(flags, command).config;
    } catch (error) {
      if (error instanceof ConfigError) fail(error, 2);
      throw error;
    }
    const ok = await runCheck(config, (step) => process.stdout.write(formatStep(step)));
    process.exit(ok ? 0 : 1);
  });
}
