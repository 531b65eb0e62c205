// @hey-api/openapi-ts: Vary's OpenAPI document → src/client (types, one function per operation id).
// VARY_OPENAPI: a URL (a running server's /schema/openapi.json) or a saved file.
import { defineConfig } from "@hey-api/openapi-ts";

export default defineConfig({
  input: process.env.VARY_OPENAPI ?? "http://127.0.0.1:8000/schema/openapi.json",
  output: { path: "src/client" },
  plugins: ["@hey-api/client-fetch"],
  logs: { file: false },
});
