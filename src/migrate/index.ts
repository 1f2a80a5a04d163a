export { MIGRATION_ROUTES } from './protocol.js';
export { runMigrate, type MigrateConfig } from './run.js';
export type { MigrateOptions, MigrationReport } from './sequence.js';
export { serveMigration, type MigrationHost } from './serve.js';
export { MigrationTarget } from './target.js';
export { addMigrateCommand } from './command.js';
