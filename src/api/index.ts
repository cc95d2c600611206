/**
 * api: the REST/JSON API under /api2/json. Thin: each route declares its input and output schema and its
 * permission next to a handler that calls app/. The dispatcher authenticates (API tokens), checks privileges
 * on ACL paths, validates input and maps errors through the one error table.
 */
export { ROUTES } from './routes.ts';
export { ApiDispatcher, createApiServer, API_PREFIX, type ApiAuth, type ApiServerOptions, type ApiResponse } from './server.ts';
export type { Route, ApiRequest, Permission } from './route.ts';
