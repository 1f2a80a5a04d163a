export { RevocationList } from './list.js';
