export type { ControlHandler, ControlRoute } from './protocol.js';
export { serveControl, type ControlServer } from './server.js';
export { ControlRefusal, routeAdd, routeList, routeRemove } from './verbs.js';
export { addRouteCommand } from './command.js';
