/**
 * The outbox relay: publishes the rows producers committed to `sluice_outbox` to JetStream,
 * through the SDK's own publish (same subject, headers and `Nats-Msg-Id` as a direct
 * publish), and marks them sent in the transaction that locked them. A relay that dies
 * between the two publishes the row again later, and JetStream stores it once.
 *
 * Several relays can run against one database: rows are claimed with `FOR UPDATE SKIP
 * LOCKED`, and a row waits while an older unsent row of its key is held by another relay,
 * so each key's events reach JetStream in the order they were enqueued.
 */
import { Context, Duration, Effect, Either, Exit, Layer, ManagedRuntime, Queue, Schedule } from "effect"
import postgres from "postgres"
import { Envelope } from "@sluice/protocol"
import type { ClaimedRow } from "./internal/outboxStatements.js"
import { claimPending, deleteSent, markFailed, markSent, outboxExists } from "./internal/outboxStatements.js"
import { settle } from "./internal/settle.js"
import { CHANNEL, migrationFile } from "./Outbox.js"
import * as Sluice from "./Sluice.js"
import type { InvalidEnvelope, PublishError } from "./SluiceError.js"
import { OutboxUnavailable } from "./SluiceError.js"

/** Where the outbox and NATS are, and how eagerly to relay. */
export interface RelayOptions extends Pick<Sluice.ConnectOptions, "servers" | "name" | "token" | "ackTimeoutMs"> {
  /** The producer's Postgres, holding `sluice_outbox`. */
  readonly databaseUrl: string
  /** Rows claimed per transaction (default 100). */
  readonly batchSize?: number
  /** How often to look for rows when no notification came (default 5 seconds); an insert wakes the relay at once. */
  readonly pollInterval?: Duration.DurationInput
  /** How long sent rows stay in the table before they are deleted (default 1 day). */
  readonly retention?: Duration.DurationInput
  /** The longest wait between attempts while NATS or the database is unavailable (default 30 seconds). */
  readonly maxBackoff?: Duration.DurationInput
}

export const defaults = {
  batchSize: 100,
  pollInterval: Duration.seconds(5),
  retention: Duration.days(1),
  maxBackoff: Duration.seconds(30)
} as const

/** What one transaction did. */
interface Round {
  readonly claimed: number
  readonly published: number
  /** A publish got no answer from JetStream: NATS is down or the stream missing, so back off. */
  readonly natsUnavailable: boolean
}

/** Rows deleted per cleanup statement, so a large backlog never holds one long lock. */
const cleanupChunk = 1000

const silent = () => {}

/** The wait after `failures` failed attempts in a row: 100 ms, doubling, capped at `max`. */
const backoffDelay = (failures: number, max: Duration.Duration): Duration.Duration =>
  Duration.min(Duration.millis(100 * 2 ** Math.min(Math.max(failures - 1, 0), 16)), max)

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const database = <A>(query: () => Promise<A>): Effect.Effect<A, OutboxUnavailable> =>
  Effect.tryPromise({ try: query, catch: (cause) => new OutboxUnavailable({ reason: describe(cause) }) })

/** Failures that say nothing about the row: NATS will take it once it is back. */
const isNatsUnavailable = (error: PublishError | InvalidEnvelope): boolean =>
  error._tag === "PublishTimeout" || error._tag === "StreamNotFound"

interface KeyOutcome {
  readonly sent: ReadonlyArray<string>
  readonly failed?: { readonly id: string; readonly error: PublishError | InvalidEnvelope }
}

/**
 * Publishes one key's rows one after another, each only once the previous one is stored, and
 * stops at the first failure: a later row of the key must not get ahead of a failed one.
 */
const publishInOrder = (sluice: Sluice.Sluice["Type"], rows: ReadonlyArray<ClaimedRow>) =>
  Effect.gen(function* () {
    const sent: Array<string> = []
    for (const row of rows) {
      const published = yield* Effect.either(
        Effect.flatMap(Envelope.decodeEnvelope(row.envelope), (envelope) => sluice.publish(envelope))
      )
      if (Either.isLeft(published)) return { sent, failed: { id: row.id, error: published.left } } satisfies KeyOutcome
      sent.push(row.id)
    }
    return { sent } satisfies KeyOutcome
  })

/** Claimed rows by key, in claim order; rows without a key are ordered with nothing else. */
const byKey = (rows: ReadonlyArray<ClaimedRow>): ReadonlyArray<ReadonlyArray<ClaimedRow>> => {
  const groups = new Map<string, Array<ClaimedRow>>()
  const unkeyed: Array<ReadonlyArray<ClaimedRow>> = []
  for (const row of rows) {
    if (row.key === null) {
      unkeyed.push([row])
      continue
    }
    const group = groups.get(row.key)
    if (group === undefined) groups.set(row.key, [row])
    else group.push(row)
  }
  return [...groups.values(), ...unkeyed]
}

/**
 * One transaction: lock a batch, publish what may go (keys in parallel, each key in order),
 * mark it, commit. Interrupted or failed before the commit, it rolls back and the rows stay
 * unsent; those already published are published again later and deduplicated by JetStream.
 */
const round = (sql: postgres.Sql, sluice: Sluice.Sluice["Type"], batchSize: number): Effect.Effect<Round, OutboxUnavailable> =>
  Effect.acquireUseRelease(
    database(() => sql.reserve()),
    (tx) =>
      Effect.gen(function* () {
        yield* database(() => tx`BEGIN`)
        const claimed = yield* database(() => claimPending(tx, batchSize))
        const outcomes = yield* Effect.forEach(
          byKey(claimed.filter((row) => !row.blocked)),
          (rows) => publishInOrder(sluice, rows),
          { concurrency: "unbounded" }
        )
        const sent = outcomes.flatMap((outcome) => outcome.sent)
        if (sent.length > 0) yield* database(() => markSent(tx, sent))
        let natsUnavailable = false
        for (const { failed } of outcomes) {
          if (failed === undefined) continue
          natsUnavailable ||= isNatsUnavailable(failed.error)
          yield* Effect.logWarning(`event ${failed.id} not published, it stays in the outbox: ${failed.error.message}`)
          yield* database(() => markFailed(tx, failed.id, failed.error.message))
        }
        yield* database(() => tx`COMMIT`)
        return { claimed: claimed.length, published: sent.length, natsUnavailable }
      }),
    (tx, exit) =>
      (Exit.isSuccess(exit) ? Effect.void : database(() => tx`ROLLBACK`).pipe(Effect.ignore)).pipe(
        Effect.ensuring(Effect.sync(() => tx.release()))
      )
  )

/** The SDK's publisher, connecting until NATS answers: rows wait in the outbox meanwhile. */
const connectNats = (options: Sluice.ConnectOptions, maxBackoff: Duration.Duration) =>
  Layer.build(Sluice.layer(options)).pipe(
    Effect.map((context) => Context.get(context, Sluice.Sluice)),
    Effect.tapError((error) => Effect.logWarning(`${error.message}; retrying`)),
    Effect.retry(Schedule.forever.pipe(Schedule.addDelay((attempt) => backoffDelay(attempt + 1, maxBackoff))))
  )

/**
 * Rounds back to back while full batches go out, then waits for a notification or the poll
 * interval; after a failure, waits longer each time until a round succeeds again.
 */
const relay = (
  sql: postgres.Sql,
  wake: Queue.Queue<void>,
  nats: Sluice.ConnectOptions,
  options: { readonly batchSize: number; readonly pollInterval: Duration.Duration; readonly maxBackoff: Duration.Duration }
) =>
  Effect.gen(function* () {
    const sluice = yield* connectNats(nats, options.maxBackoff)
    let failures = 0
    while (true) {
      const result = yield* round(sql, sluice, options.batchSize).pipe(
        Effect.catchAllCause((cause) => Effect.logWarning("outbox relay round failed", cause).pipe(Effect.as(undefined)))
      )
      if (result === undefined || result.natsUnavailable) {
        failures += 1
        yield* Effect.sleep(backoffDelay(failures, options.maxBackoff))
        continue
      }
      failures = 0
      if (result.published > 0 && result.claimed === options.batchSize) continue
      yield* Queue.take(wake).pipe(Effect.timeout(options.pollInterval), Effect.ignore)
    }
  }).pipe(Effect.scoped)

/** Deletes rows sent longer than `retention` ago, a chunk at a time, every `every`. */
const cleanup = (sql: postgres.Sql, retention: Duration.Duration, every: Duration.Duration) =>
  database(() => deleteSent(sql, Duration.toMillis(retention), cleanupChunk)).pipe(
    Effect.repeat({ while: (deleted) => deleted === cleanupChunk }),
    Effect.catchAll((error) => Effect.logWarning(`outbox cleanup failed: ${error.message}`)),
    Effect.repeat(Schedule.spaced(every))
  )

const make = (options: RelayOptions) =>
  Effect.gen(function* () {
    const batchSize = options.batchSize ?? defaults.batchSize
    const pollInterval = Duration.decode(options.pollInterval ?? defaults.pollInterval)
    const retention = Duration.decode(options.retention ?? defaults.retention)
    const maxBackoff = Duration.decode(options.maxBackoff ?? defaults.maxBackoff)
    const sql = yield* Effect.acquireRelease(
      Effect.try({
        try: () => postgres(options.databaseUrl, { max: 4, onnotice: silent, connect_timeout: 10 }),
        catch: (cause) => new OutboxUnavailable({ reason: describe(cause) })
      }),
      (sql) => Effect.promise(() => sql.end({ timeout: 5 }))
    )
    if (!(yield* database(() => outboxExists(sql)))) {
      return yield* new OutboxUnavailable({
        reason: `table sluice_outbox does not exist; apply the outbox migration (createOutbox(db).migrate() or psql -f ${migrationFile})`
      })
    }
    const wake = yield* Queue.sliding<void>(1)
    const notified = () => {
      Queue.unsafeOffer(wake, undefined)
    }
    // Called again after every reconnect of the listening connection: notifications may have been missed.
    yield* database(() => sql.listen(CHANNEL, notified, notified))
    const every = Duration.clamp(retention, { minimum: pollInterval, maximum: Duration.minutes(1) })
    const nats: Sluice.ConnectOptions = {
      servers: options.servers,
      name: options.name ?? "sluice-outbox-relay",
      ackTimeoutMs: options.ackTimeoutMs,
      token: options.token
    }
    yield* relay(sql, wake, nats, { batchSize, pollInterval, maxBackoff }).pipe(
      Effect.annotateLogs({ module: "OutboxRelay" }),
      Effect.forkScoped
    )
    yield* cleanup(sql, retention, every).pipe(Effect.annotateLogs({ module: "OutboxRelay" }), Effect.forkScoped)
  })

/**
 * Relays for the lifetime of the layer. Fails with `OutboxUnavailable` when the database
 * cannot be reached or lacks the outbox table; an unreachable NATS is waited for instead.
 */
export const layer = (options: RelayOptions): Layer.Layer<never, OutboxUnavailable> => Layer.scopedDiscard(make(options))

/** A relay started from plain TypeScript. */
export interface RunningRelay {
  /** Stops relaying; rows claimed but not yet marked are left unsent for the next relay. */
  readonly stop: () => Promise<void>
}

/** Starts a relay; rejects with `OutboxUnavailable` as `layer` fails. */
export const startOutboxRelay = async (options: RelayOptions): Promise<RunningRelay> => {
  const runtime = ManagedRuntime.make(layer(options))
  await settle(runtime.runPromiseExit(Effect.void)).catch(async (error: unknown) => {
    await runtime.dispose()
    throw error
  })
  return { stop: () => runtime.dispose() }
}
