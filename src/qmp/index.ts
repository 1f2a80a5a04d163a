export { connectWithRetry, QmpClient, QmpError, type EventPredicate, type QmpEvent } from './client.js';
