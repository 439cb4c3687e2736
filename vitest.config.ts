import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.{ts,tsx}", "apps/*/test/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["**/node_modules/**"],
    pool: "forks",
    // Three at once on two cores: the multi-process and fault tests run several brokers each, and a
    // fourth file at the same time starves their timers (seen as rate-window and timeout failures).
    poolOptions: { forks: { maxForks: 3, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
