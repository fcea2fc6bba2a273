// The store's public surface: open a local/remote libSQL store, serve it over HTTP, or reach a
// served one; plus the record types, input schemas and typed errors they share.
export * from "./errors.ts";
export { HttpStore, type HttpStoreOptions } from "./http-client.ts";
export * from "./inputs.ts";
export { LibsqlStore, type OpenStoreOptions, openStore } from "./libsql.ts";
export { openApiDocument } from "./openapi.ts";
export { type StoreRoutesOptions, storeRoutes } from "./routes.ts";
export { type SweeperOptions, startSweeper } from "./sweeper.ts";
export * from "./types.ts";
