export { bar, barCells, clip, clipMiddle, columns } from './fit.js';
export { terminalView } from './view.js';
