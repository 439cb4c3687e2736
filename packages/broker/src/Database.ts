/**
 * The history database connection: embedded PGlite (no setup, one process) or a real
 * Postgres (shared by several broker processes). Either way the checked-in migrations run
 * when the layer is built, so a fresh or older database is brought up to date at start.
 */
import { PGlite } from "@electric-sql/pglite"
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core"
import { drizzle as drizzlePglite } from "drizzle-orm/pglite"
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator"
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js"
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator"
import { Context, Effect, Layer } from "effect"
import { mkdir } from "node:fs/promises"
import { fileURLToPath } from "node:url"
import postgres from "postgres"
import { DatabaseUnavailable, describeCause } from "./HistoryError.js"
import * as schema from "./HistorySchema.js"

/** Both drivers give this type, so the stores are written once for PGlite and Postgres. */
export type HistoryDatabase = PgDatabase<PgQueryResultHKT, typeof schema>

/** The open, migrated history database. */
export class Database extends Context.Tag("@sluice/broker/Database")<
  Database,
  { readonly db: HistoryDatabase; readonly kind: "pglite" | "postgres" }
>() {}

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url))

const silent = () => {}

/** Serialises migrations across broker processes that start at the same time. */
const migrationLock = "sluice:migrations"

const withoutPassword = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return "(unparseable URL)"
  }
}

/** Embedded PGlite: in memory when `dataDir` is undefined, else in that directory (created if missing). */
export const layerPglite = (dataDir: string | undefined): Layer.Layer<Database, DatabaseUnavailable> =>
  Layer.scoped(
    Database,
    Effect.gen(function* () {
      const unavailable = (cause: unknown) =>
        new DatabaseUnavailable({
          message: `cannot open PGlite ${dataDir === undefined ? "in memory" : `at ${dataDir}`}: ${describeCause(cause)}`
        })
      const client = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: async () => {
            if (dataDir !== undefined) await mkdir(dataDir, { recursive: true })
            return PGlite.create(dataDir)
          },
          catch: unavailable
        }),
        (client) => Effect.tryPromise(() => client.close()).pipe(Effect.ignoreLogged)
      )
      const db = drizzlePglite({ client, schema })
      yield* Effect.tryPromise({ try: () => migratePglite(db, { migrationsFolder }), catch: unavailable })
      return { db, kind: "pglite" as const }
    })
  )

/** A Postgres server through postgres.js, with a small pool. */
export const layerPostgres = (url: string): Layer.Layer<Database, DatabaseUnavailable> =>
  Layer.scoped(
    Database,
    Effect.gen(function* () {
      const unavailable = (cause: unknown) =>
        new DatabaseUnavailable({ message: `cannot open Postgres at ${withoutPassword(url)}: ${describeCause(cause)}` })
      const connect = (max: number) =>
        Effect.acquireRelease(
          Effect.try({ try: () => postgres(url, { max, onnotice: silent, connect_timeout: 10 }), catch: unavailable }),
          (client) => Effect.promise(() => client.end({ timeout: 5 }))
        )
      // Migrations run on their own single connection, so the session-level advisory lock
      // covers every statement; closing that connection releases the lock.
      yield* Effect.scoped(
        Effect.flatMap(connect(1), (client) =>
          Effect.tryPromise({
            try: async () => {
              await client`select pg_advisory_lock(hashtext(${migrationLock}))`
              await migratePostgres(drizzlePostgres({ client }), { migrationsFolder })
            },
            catch: unavailable
          })
        )
      )
      const client = yield* connect(10)
      return { db: drizzlePostgres({ client, schema }), kind: "postgres" as const }
    })
  )
