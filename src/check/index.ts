export { addCheckCommand } from './command.js';
