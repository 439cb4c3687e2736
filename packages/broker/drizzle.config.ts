/** drizzle-kit configuration: `pnpm db:generate` turns HistorySchema.ts into a checked-in migration. */
import { defineConfig } from "drizzle-kit"

export default defineConfig({
  dialect: "postgresql",
  schema: "./src/HistorySchema.ts",
  out: "./drizzle"
})
