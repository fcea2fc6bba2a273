// drizzle-kit configuration: generates the store's SQL migrations from src/store/schema.ts into
// src/store/migrations (checked in; applied by openStore on every open).
import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "turso",
  schema: "./src/store/schema.ts",
  out: "./src/store/migrations",
});
