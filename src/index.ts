// Fulgur's public API: everything users and the other modules import.
export * from "./gpu/index.ts";
