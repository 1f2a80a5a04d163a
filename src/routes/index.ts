export { identityPatternProblem, routeMatches, routeNameProblem, routePatternProblem, socketPathProblem } from './patterns.js';
export { lookUpRouteDir, routeDirSocket, type DirLookup } from './route-dir.js';
