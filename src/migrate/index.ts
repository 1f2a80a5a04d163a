export { addMigrateCommand } from './command.js';
export { serveMigration, type MigrationHost } from './serve.js';
export { MigrationTarget } from './target.js';
