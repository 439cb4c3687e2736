/**
 * A fresh Postgres database per test file, so tests never see each other's rows and
 * leave nothing behind. Needs the local server (trust auth); `SLUICE_TEST_PG_URL`
 * points elsewhere.
 */
import { randomBytes } from "node:crypto"
import { Effect, type Scope } from "effect"
import postgres from "postgres"

const adminUrl = process.env.SLUICE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

/** A database that exists until `drop` is called. */
export interface ThrowawayDatabase {
  readonly url: string
  readonly drop: () => Promise<void>
}

const withAdmin = async (statement: string): Promise<void> => {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} })
  try {
    await admin.unsafe(statement)
  } finally {
    await admin.end({ timeout: 5 })
  }
}

/** Creates `sluice_test_<random>` on the test server; for tests outside Effect. */
export const createThrowawayDatabase = async (): Promise<ThrowawayDatabase> => {
  const name = `sluice_test_${randomBytes(6).toString("hex")}`
  await withAdmin(`CREATE DATABASE ${name}`)
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return { url: url.toString(), drop: () => withAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) }
}

/** The URL of a throwaway database, dropped when the scope closes. */
export const throwawayDatabase: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(createThrowawayDatabase),
  (database) => Effect.promise(database.drop)
).pipe(Effect.map((database) => database.url))
