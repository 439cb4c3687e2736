/**
 * The history store on the database (Drizzle), the same code for PGlite and Postgres.
 * Fact batches are written with a few multi-row statements in one transaction; the
 * newest-fact-wins rules of `HistoryStore` are expressed in each upsert's `set`, so a
 * replayed or late fact cannot move a delivery backwards, whichever process applies it.
 */
import { Destination, type History, States } from "@sluice/protocol"
import { and, asc, desc, eq, exists, getTableColumns, gt, gte, inArray, isNull, lt, lte, ne, notExists, or, sql, type SQL } from "drizzle-orm"
import type { PgColumn, PgTable } from "drizzle-orm/pg-core"
import { Array, Effect, Layer, Option } from "effect"
import { Database, type HistoryDatabase } from "./Database.js"
import * as SecretBox from "./SecretBox.js"
import type { AttemptFinished, DeliveryChanged, Fact, HealthChanged, OperatorActed } from "./Fact.js"
import { describeCause, HistoryUnavailable } from "./HistoryError.js"
import { attempts, auditLog, deliveries, destinations, events, healthTransitions, idempotencyKeys } from "./HistorySchema.js"
import {
  attemptFinishedAt,
  type AuditQuery,
  decodeCursor,
  DEFAULT_PAGE_SIZE,
  type DeliveryStats,
  destinationExists,
  HistoryStore,
  latencyWindows,
  MINUTE_MS,
  type Position,
  PRUNE_BATCH_SIZE,
  stateCounts,
  throughputPoints,
  throughputSpan,
  toPage,
  toSummary
} from "./HistoryStore.js"

/** Rows per statement: bounds the size of one statement's JSON parameter. */
const rowsPerStatement = 1000

const inChunks = async <A>(rows: ReadonlyArray<A>, run: (chunk: A[]) => Promise<unknown>): Promise<void> => {
  for (const chunk of Array.chunksOf(rows, rowsPerStatement)) await run(chunk)
}

/**
 * `rows` as a `select` of every column of `table`, in the order `insert(table).select(…)`
 * lists them, from one JSON parameter the database expands (`json_to_recordset`). The
 * batch writes of events and facts use it instead of a multi-row `values` list, whose
 * building costs drizzle work for every value: at thousands of facts a second that was
 * the broker's largest single cost. Values are what drizzle would send (dates as ISO
 * strings, JSON columns as JSON); a missing value is SQL NULL, or the column's default.
 */
const rowsFromJson = <T extends PgTable>(table: T, rows: ReadonlyArray<T["$inferInsert"]>): SQL => {
  // Generated columns are left out, as drizzle leaves them out of the insert's column list.
  const columns = Object.entries(getTableColumns(table)).filter(
    ([, column]) => column.generated === undefined || column.generated.type === "byDefault"
  )
  const selected = columns.map(([key, column]) => {
    const value = sql`r.${sql.identifier(key)}`
    return column.default === undefined ? value : sql`coalesce(${value}, ${column.default})`
  })
  const definition = columns.map(([key, column]) => sql`${sql.identifier(key)} ${sql.raw(column.getSQLType())}`)
  return sql`select ${sql.join(selected, sql`, `)} from json_to_recordset(${storableJson(JSON.stringify(rows))}::json) as r(${sql.join(definition, sql`, `)})`
}

/** A `\u0000` or lone-surrogate escape, unless its backslash is itself escaped (an even run of backslashes before it). */
const unstorableEscape = /(?<!\\)((?:\\\\)*)\\u(?:0000|d[89a-f][0-9a-f]{2})/gi

/**
 * JSON text as Postgres can store it: it refuses U+0000 and unpaired surrogates in `text` and
 * `jsonb`, and one such string would fail the whole batch again at every retry, stopping the
 * history. `JSON.stringify` writes both as `\u` escapes (and never escapes a valid pair), so
 * they are replaced there by U+FFFD, as a lossy decoder would. HTTP ingest refuses such
 * events; this keeps the history going for those published otherwise (the SDK, the outbox)
 * and for text from receivers. What is delivered is unchanged: only the history's copy differs.
 */
export const storableJson = (json: string): string =>
  json.includes("\\u0000") || /\\ud[89a-f]/i.test(json) ? json.replace(unstorableEscape, "$1\\ufffd") : json

const toDate = (timestamp: string): Date => new Date(timestamp)
const toIso = (date: Date): string => date.toISOString()
const toIsoOrNull = (date: Date | null): string | null => (date === null ? null : date.toISOString())

// ---- destinations

type DestinationRow = typeof destinations.$inferSelect

/** Stored settings over today's defaults, so rows written by an older version gain new fields. */
const withDefaults = (stored: Partial<Destination.DestinationSettings>): Destination.DestinationSettings => ({
  ...Destination.defaultSettings,
  ...stored,
  retry: { ...Destination.defaultSettings.retry, ...stored.retry },
  health: { ...Destination.defaultSettings.health, ...stored.health }
})

/**
 * How a destination's secret is kept in its row: sealed by the box (see `SecretBox`). A row
 * written before encryption holds the plain secret; it is read as it is and sealed on its
 * next write.
 */
interface SecretCodec {
  readonly toRow: (secret: string, destinationId: string) => string
  /** Throws `SecretUnreadable`; run inside a query, it fails the query with the reason. */
  readonly fromRow: (stored: string, destinationId: string) => string
}

const secretCodec = (box: SecretBox.SecretBox["Type"]): SecretCodec => ({ toRow: box.seal, fromRow: box.open })

const fromDestinationRow =
  (secrets: SecretCodec) =>
  (row: DestinationRow): Destination.Destination => ({
    id: row.id,
    name: row.name,
    url: row.url,
    subscriptions: row.subscriptions,
    secret: secrets.fromRow(row.secret, row.id),
    ...withDefaults(row.settings),
    createdAt: toIso(row.createdAt),
    updatedAt: toIso(row.updatedAt)
  })

const toDestinationRow =
  (secrets: SecretCodec) =>
  (destination: Destination.Destination): DestinationRow => {
    const { id, name, url, subscriptions, secret, createdAt, updatedAt, ...settings } = destination
    return {
      id,
      name,
      url,
      subscriptions,
      secret: secrets.toRow(secret, id),
      settings,
      createdAt: toDate(createdAt),
      updatedAt: toDate(updatedAt)
    }
  }

// ---- events

const toEventRow = (event: History.StoredEvent): typeof events.$inferInsert => ({
  id: event.id,
  type: event.type,
  key: event.key,
  version: event.version,
  idempotencyKey: event.idempotencyKey,
  occurredAt: toDate(event.occurredAt),
  receivedAt: toDate(event.receivedAt),
  streamSeq: event.streamSeq,
  data: event.data ?? null,
  headers: event.headers
})

const fromEventRow = (row: typeof events.$inferSelect): History.StoredEvent => ({
  ...row,
  occurredAt: toIso(row.occurredAt),
  receivedAt: toIso(row.receivedAt)
})

/**
 * Stores events in stream order. The first event of an idempotency key claims it in
 * `idempotency_keys`; a later one with the same key (a retry beyond JetStream's duplicate
 * window) is marked as its duplicate.
 */
const insertEventRows = async (db: HistoryDatabase, rows: ReadonlyArray<History.StoredEvent>) => {
  await inChunks(rows, (chunk) =>
    db.insert(events).select(rowsFromJson(events, chunk.map(toEventRow))).onConflictDoNothing({ target: events.id })
  )
  const keyed = rows.filter((row) => row.idempotencyKey !== null)
  if (keyed.length === 0) return
  await inChunks(keyed, (chunk) =>
    db
      .insert(idempotencyKeys)
      .select(rowsFromJson(idempotencyKeys, chunk.map((row) => ({ key: row.idempotencyKey!, eventId: row.id }))))
      .onConflictDoNothing({ target: idempotencyKeys.key })
  )
  await inChunks(keyed, (chunk) =>
    db
      .update(events)
      .set({ duplicateOf: idempotencyKeys.eventId })
      .from(idempotencyKeys)
      .where(
        and(
          eq(events.idempotencyKey, idempotencyKeys.key),
          ne(events.id, idempotencyKeys.eventId),
          isNull(events.duplicateOf),
          inArray(
            events.id,
            chunk.map((row) => row.id)
          )
        )
      )
  )
}

// ---- facts

/** The value the conflicting insert proposed for `column`. */
const excluded = (column: PgColumn): SQL => sql.raw(`excluded."${column.name}"`)

/** The incoming value when the incoming fact is at least as new as the stored delivery, else the stored one. */
const ifNewer = (column: PgColumn): SQL =>
  sql`case when excluded."updated_at" >= ${deliveries.updatedAt} then ${excluded(column)} else ${column} end`

const deliveryTarget = [deliveries.eventId, deliveries.destinationId]

/** Set on every delivery upsert: the earliest creation, the latest update. */
const timestampsOnConflict = {
  createdAt: sql`least(${deliveries.createdAt}, ${excluded(deliveries.createdAt)})`,
  updatedAt: sql`greatest(${deliveries.updatedAt}, ${excluded(deliveries.updatedAt)})`
}

const insertAttemptRows = (db: HistoryDatabase, facts: ReadonlyArray<AttemptFinished>) =>
  inChunks(facts, (chunk) =>
    db
      .insert(attempts)
      .select(
        rowsFromJson(attempts, chunk.map((f) => ({
          id: f.id,
          eventId: f.eventId,
          destinationId: f.destinationId,
          attempt: f.attempt,
          startedAt: toDate(f.startedAt),
          durationMs: f.durationMs,
          outcome: f.outcome,
          statusCode: f.statusCode,
          error: f.error,
          responseExcerpt: f.responseExcerpt
        })))
      )
      .onConflictDoNothing({ target: attempts.id })
  )

/** At most one fact per delivery: a multi-row upsert may not touch a row twice. */
const upsertDeliveriesAfterAttempts = (db: HistoryDatabase, facts: ReadonlyArray<AttemptFinished>) =>
  inChunks(facts, (chunk) =>
    db
      .insert(deliveries)
      .select(
        rowsFromJson(deliveries, chunk.map((f) => ({
          eventId: f.eventId,
          destinationId: f.destinationId,
          state: f.state,
          attempts: f.attempt,
          lastStatusCode: f.statusCode,
          lastError: f.error,
          nextAttemptAt: f.nextAttemptAt === null ? null : toDate(f.nextAttemptAt),
          createdAt: toDate(f.startedAt),
          updatedAt: toDate(attemptFinishedAt(f))
        })))
      )
      .onConflictDoUpdate({
        target: deliveryTarget,
        set: {
          state: ifNewer(deliveries.state),
          lastStatusCode: ifNewer(deliveries.lastStatusCode),
          lastError: ifNewer(deliveries.lastError),
          nextAttemptAt: ifNewer(deliveries.nextAttemptAt),
          attempts: sql`greatest(${deliveries.attempts}, ${excluded(deliveries.attempts)})`,
          ...timestampsOnConflict
        }
      })
  )

/** At most one fact per delivery, as above. A change without a reason keeps the last error. */
const upsertDeliveriesAfterChanges = (db: HistoryDatabase, facts: ReadonlyArray<DeliveryChanged>) =>
  inChunks(facts, (chunk) =>
    db
      .insert(deliveries)
      .select(
        rowsFromJson(deliveries, chunk.map((f) => ({
          eventId: f.eventId,
          destinationId: f.destinationId,
          state: f.state,
          lastError: f.reason,
          canceledBy: f.canceledBy,
          duplicateOf: f.duplicateOf,
          ignoredReason: f.ignoredReason,
          nextAttemptAt: null,
          createdAt: toDate(f.at),
          updatedAt: toDate(f.at)
        })))
      )
      .onConflictDoUpdate({
        target: deliveryTarget,
        set: {
          state: ifNewer(deliveries.state),
          canceledBy: ifNewer(deliveries.canceledBy),
          duplicateOf: ifNewer(deliveries.duplicateOf),
          ignoredReason: ifNewer(deliveries.ignoredReason),
          nextAttemptAt: ifNewer(deliveries.nextAttemptAt),
          lastError: sql`coalesce(${ifNewer(deliveries.lastError)}, ${deliveries.lastError})`,
          ...timestampsOnConflict
        }
      })
  )

const insertHealthTransitions = (db: HistoryDatabase, facts: ReadonlyArray<HealthChanged>) =>
  inChunks(facts, (chunk) =>
    db
      .insert(healthTransitions)
      .select(
        rowsFromJson(
          healthTransitions,
          chunk.map((f) => ({
            id: f.id,
            destinationId: f.destinationId,
            fromState: f.from,
            toState: f.to,
            reason: f.reason,
            at: toDate(f.at)
          }))
        )
      )
      .onConflictDoNothing({ target: healthTransitions.id })
  )

const insertAuditEntries = (db: HistoryDatabase, facts: ReadonlyArray<OperatorActed>) =>
  inChunks(facts, (chunk) =>
    db
      .insert(auditLog)
      .select(
        rowsFromJson(
          auditLog,
          chunk.map((f) => ({
            id: f.id,
            at: toDate(f.at),
            actor: f.actor,
            action: f.action,
            destinationId: f.destinationId,
            details: f.details ?? null
          }))
        )
      )
      .onConflictDoNothing({ target: auditLog.id })
  )

type DeliveryFact = AttemptFinished | DeliveryChanged

/**
 * Splits a batch's delivery facts into rounds holding at most one fact per delivery,
 * the n-th fact of a delivery in the n-th round, so applying the rounds one after the
 * other applies each delivery's facts in batch order.
 */
const inRounds = (facts: ReadonlyArray<DeliveryFact>): ReadonlyArray<ReadonlyArray<DeliveryFact>> => {
  const rounds: DeliveryFact[][] = []
  const seen = new Map<string, number>()
  for (const fact of facts) {
    const key = `${fact.eventId}\u0000${fact.destinationId}`
    const round = seen.get(key) ?? 0
    seen.set(key, round + 1)
    ;(rounds[round] ??= []).push(fact)
  }
  return rounds
}

const applyFactBatch = async (db: HistoryDatabase, facts: ReadonlyArray<Fact>): Promise<void> => {
  const ofTag = <T extends Fact["_tag"]>(tag: T, from: ReadonlyArray<Fact>) =>
    from.filter((f): f is Extract<Fact, { _tag: T }> => f._tag === tag)
  await insertAttemptRows(db, ofTag("AttemptFinished", facts))
  const deliveryFacts = facts.filter((f): f is DeliveryFact => f._tag === "AttemptFinished" || f._tag === "DeliveryChanged")
  for (const round of inRounds(deliveryFacts)) {
    await upsertDeliveriesAfterAttempts(db, ofTag("AttemptFinished", round))
    await upsertDeliveriesAfterChanges(db, ofTag("DeliveryChanged", round))
  }
  await insertHealthTransitions(db, ofTag("HealthChanged", facts))
  await insertAuditEntries(db, ofTag("OperatorActed", facts))
}

// ---- reads

const fromAttemptRow = (row: typeof attempts.$inferSelect): History.Attempt => ({
  attempt: row.attempt,
  startedAt: toIso(row.startedAt),
  durationMs: row.durationMs,
  outcome: row.outcome,
  statusCode: row.statusCode,
  error: row.error,
  responseExcerpt: row.responseExcerpt
})

const fromDeliveryRow = (row: typeof deliveries.$inferSelect): History.Delivery => ({
  ...row,
  nextAttemptAt: toIsoOrNull(row.nextAttemptAt),
  createdAt: toIso(row.createdAt),
  updatedAt: toIso(row.updatedAt)
})

const readEvent = async (db: HistoryDatabase, id: string): Promise<Option.Option<History.EventDetail>> => {
  const [event] = await db.select().from(events).where(eq(events.id, id))
  if (event === undefined) return Option.none()
  const deliveryRows = await db
    .select()
    .from(deliveries)
    .where(eq(deliveries.eventId, id))
    .orderBy(asc(deliveries.destinationId))
  const attemptRows = await db
    .select()
    .from(attempts)
    .where(eq(attempts.eventId, id))
    .orderBy(asc(attempts.startedAt), asc(attempts.attempt))
  return Option.some({
    event: fromEventRow(event),
    deliveries: deliveryRows.map((row) => ({
      ...fromDeliveryRow(row),
      attemptLog: attemptRows.filter((a) => a.destinationId === row.destinationId).map(fromAttemptRow)
    }))
  })
}

/** After the cursor's position in a newest-first list ordered by `(at, id)`: a row comparison the index serves. */
const afterPosition = (at: PgColumn, id: PgColumn, position: Position): SQL =>
  sql`(${at}, ${id}) < (${position.at}::timestamptz, ${position.id})`

/**
 * Whether the event type in `type` matches the subscription pattern in `pattern` (both SQL),
 * as `Subjects.matchesPattern` decides: the pattern becomes an anchored regular expression,
 * `*` one token, `>` the rest. Patterns are validated, so their tokens hold no other regex syntax.
 */
const typeMatches = (type: SQL | PgColumn, pattern: SQL): SQL =>
  sql`${type} ~ ('^' || replace(replace(replace(${pattern}, '.', ${"\\."}), '*', '[^.]+'), '>', '.+') || '$')`

/** The event has a stored delivery (to `destinationId`, in `state`, when given). */
const hasDelivery = (db: HistoryDatabase, destinationId: string | undefined, state: States.DeliveryState | undefined): SQL =>
  exists(
    db
      .select({ one: sql`1` })
      .from(deliveries)
      .where(
        and(
          eq(deliveries.eventId, events.id),
          destinationId === undefined ? undefined : eq(deliveries.destinationId, destinationId),
          state === undefined ? undefined : eq(deliveries.state, state)
        )
      )
  )

/** A destination (`destinationId`, when given) owes the event a delivery it has not attempted: `owesDelivery` in SQL. */
const owesUnattempted = (destinationId: string | undefined): SQL => sql`exists (
  select 1 from ${destinations}
  where ${destinationId === undefined ? sql`true` : eq(destinations.id, destinationId)}
    and ${destinations.createdAt} <= ${events.receivedAt}
    and not exists (
      select 1 from ${deliveries} where ${deliveries.eventId} = ${events.id} and ${deliveries.destinationId} = ${destinations.id}
    )
    and exists (
      select 1 from jsonb_array_elements_text(${destinations.subscriptions}) as subscription(pattern)
      where ${typeMatches(events.type, sql`subscription.pattern`)}
    )
)`

/** The event's deliveries as `toSummary` shows them include one at `destination` in `state` (either may be absent). */
const deliveryFilter = (db: HistoryDatabase, destinationId: string | undefined, state: States.DeliveryState | undefined): SQL =>
  state === undefined || state === "queued"
    ? or(hasDelivery(db, destinationId, state), owesUnattempted(destinationId))!
    : hasDelivery(db, destinationId, state)

const listEvents = async (
  db: HistoryDatabase,
  query: History.EventQuery,
  position: Option.Option<Position>,
  secrets: SecretCodec
): Promise<History.EventPage> => {
  const limit = query.limit ?? DEFAULT_PAGE_SIZE
  const rows = await db
    .select()
    .from(events)
    .where(
      and(
        query.type === undefined
          ? undefined
          : /[*>]/.test(query.type)
            ? typeMatches(events.type, sql`${query.type}`)
            : eq(events.type, query.type),
        query.key === undefined ? undefined : eq(events.key, query.key),
        query.since === undefined ? undefined : gte(events.receivedAt, toDate(query.since)),
        query.until === undefined ? undefined : lt(events.receivedAt, toDate(query.until)),
        query.destination === undefined && query.state === undefined
          ? undefined
          : deliveryFilter(db, query.destination, query.state),
        Option.isNone(position) ? undefined : afterPosition(events.receivedAt, events.id, position.value)
      )
    )
    .orderBy(desc(events.receivedAt), desc(events.id))
    .limit(limit + 1)
  const page = toPage(rows.map(fromEventRow), limit, (e) => ({ at: e.receivedAt, id: e.id }))
  if (page.items.length === 0) return { items: [], nextCursor: null }
  const stored = await db
    .select({
      eventId: deliveries.eventId,
      destinationId: deliveries.destinationId,
      state: deliveries.state,
      attempts: deliveries.attempts,
      updatedAt: deliveries.updatedAt
    })
    .from(deliveries)
    .where(
      inArray(
        deliveries.eventId,
        page.items.map((e) => e.id)
      )
    )
  const all = (await db.select().from(destinations)).map(fromDestinationRow(secrets))
  return {
    items: page.items.map((event) =>
      toSummary(
        event,
        stored
          .filter((d) => d.eventId === event.id)
          .map(({ destinationId, state, attempts, updatedAt }) => ({ destinationId, state, attempts, updatedAt: toIso(updatedAt) })),
        all
      )
    ),
    nextCursor: page.nextCursor
  }
}

const healthTimeline = async (
  db: HistoryDatabase,
  destinationId: string,
  limit: number
): Promise<ReadonlyArray<History.HealthTransition>> => {
  const rows = await db
    .select()
    .from(healthTransitions)
    .where(eq(healthTransitions.destinationId, destinationId))
    .orderBy(desc(healthTransitions.at), desc(healthTransitions.id))
    .limit(limit)
  return rows.map((row) => ({ id: row.id, from: row.fromState, to: row.toState, reason: row.reason, at: toIso(row.at) }))
}

const listAudit = async (db: HistoryDatabase, query: AuditQuery, position: Option.Option<Position>): Promise<History.AuditPage> => {
  const limit = query.limit ?? DEFAULT_PAGE_SIZE
  const rows = await db
    .select()
    .from(auditLog)
    .where(
      and(
        query.destination === undefined ? undefined : eq(auditLog.destinationId, query.destination),
        Option.isNone(position) ? undefined : afterPosition(auditLog.at, auditLog.id, position.value)
      )
    )
    .orderBy(desc(auditLog.at), desc(auditLog.id))
    .limit(limit + 1)
  const entries = rows.map((row) => ({ ...row, at: toIso(row.at), details: row.details ?? null }))
  return toPage(entries, limit, (entry) => entry)
}

const iso = (ms: number): string => new Date(ms).toISOString()

/** `percentile_cont` is a double precision, null over no rows. */
const nullableNumber = { mapFromDriverValue: (value: unknown): number | null => (value === null ? null : Number(value)) }

/** One statement per figure: state counts, every latency window at once, and attempts per minute. */
const deliveryStats = async (db: HistoryDatabase, destinationId: string, now: number): Promise<DeliveryStats> => {
  const states = await db
    .select({ state: deliveries.state, n: sql<number>`count(*)::int` })
    .from(deliveries)
    .where(eq(deliveries.destinationId, destinationId))
    .groupBy(deliveries.state)

  const inWindow = (ms: number) => sql`${attempts.startedAt} >= ${iso(now - ms)}::timestamptz`
  const percentile = (fraction: number, ms: number) =>
    sql`percentile_cont(${sql.raw(String(fraction))}) within group (order by ${attempts.durationMs}) filter (where ${inWindow(ms)})`.mapWith(
      nullableNumber
    )
  const windowFields = (ms: number) => ({
    count: sql<number>`(count(*) filter (where ${inWindow(ms)}))::int`,
    p50: percentile(0.5, ms),
    p99: percentile(0.99, ms)
  })
  const selection: Record<string, ReturnType<typeof windowFields>> = Object.fromEntries(
    latencyWindows.map(({ window, ms }) => [window, windowFields(ms)])
  )
  const [latency] = await db
    .select(selection)
    .from(attempts)
    .where(
      and(
        eq(attempts.destinationId, destinationId),
        eq(attempts.outcome, "success"),
        gte(attempts.startedAt, new Date(now - Math.max(...latencyWindows.map((w) => w.ms)))),
        lte(attempts.startedAt, new Date(now))
      )
    )

  const span = throughputSpan(now)
  // Minutes since the epoch; no bound parameters, so the grouped expression is the selected one.
  const minute = sql<number>`floor(extract(epoch from ${attempts.startedAt}) / 60)::int`
  const perMinute = await db
    .select({
      minute,
      succeeded: sql<number>`(count(*) filter (where ${attempts.outcome} = 'success'))::int`,
      failed: sql<number>`(count(*) filter (where ${attempts.outcome} <> 'success'))::int`
    })
    .from(attempts)
    .where(
      and(
        eq(attempts.destinationId, destinationId),
        gte(attempts.startedAt, new Date(span.from)),
        lt(attempts.startedAt, new Date(span.to))
      )
    )
    .groupBy(minute)

  return {
    states: stateCounts(states.map((row) => [row.state, row.n] as const)),
    latency: latencyWindows.map(({ window }) => {
      const figures = latency?.[window]
      return { window, count: figures?.count ?? 0, p50Ms: figures?.p50 ?? null, p99Ms: figures?.p99 ?? null }
    }),
    throughput: throughputPoints(now, new Map(perMinute.map(({ minute, ...counts }) => [minute * MINUTE_MS, counts])))
  }
}

// ---- pruning

/** Delivery states an event is still in flight in: such an event is kept however old. */
const inFlightStates = States.DeliveryState.literals.filter((state) => !States.isFinalDeliveryState(state))

/**
 * The next `limit` events received before `olderThan`, oldest first, after `position`.
 * Walking by position rather than rescanning from the oldest keeps the events that are
 * still in flight from being read again by every batch.
 */
const selectPruneCandidates = (db: HistoryDatabase, olderThan: Date, position: Option.Option<Position>, limit: number) =>
  db
    .select({ id: events.id, receivedAt: events.receivedAt })
    .from(events)
    .where(
      and(
        lt(events.receivedAt, olderThan),
        Option.isNone(position)
          ? undefined
          : sql`(${events.receivedAt}, ${events.id}) > (${position.value.at}::timestamptz, ${position.value.id})`
      )
    )
    .orderBy(asc(events.receivedAt), asc(events.id))
    .limit(limit)

/** Deletes those of the events that are old enough and no longer in flight (checked again here, under the row locks). */
const deleteSettledEvents = (db: HistoryDatabase, ids: ReadonlyArray<string>, olderThan: Date) =>
  db
    .delete(events)
    .where(
      and(
        inArray(events.id, [...ids]),
        lt(events.receivedAt, olderThan),
        notExists(
          db
            .select({ one: sql`1` })
            .from(deliveries)
            .where(and(eq(deliveries.eventId, events.id), inArray(deliveries.state, inFlightStates)))
        )
      )
    )
    .returning({ id: events.id, idempotencyKey: events.idempotencyKey })

const deleteDeliveriesOf = (db: HistoryDatabase, eventIds: ReadonlyArray<string>) =>
  db.delete(deliveries).where(inArray(deliveries.eventId, [...eventIds]))

const deleteAttemptsOf = (db: HistoryDatabase, eventIds: ReadonlyArray<string>) =>
  db.delete(attempts).where(inArray(attempts.eventId, [...eventIds]))

/** The keys these events claimed; a key claimed by an event that is kept stays. */
const deleteIdempotencyKeysOf = (
  db: HistoryDatabase,
  gone: ReadonlyArray<{ readonly id: string; readonly idempotencyKey: string | null }>
) => {
  const keys = gone.flatMap((event) => (event.idempotencyKey === null ? [] : [event.idempotencyKey]))
  return keys.length === 0
    ? Promise.resolve()
    : db.delete(idempotencyKeys).where(
        and(
          inArray(idempotencyKeys.key, keys),
          inArray(
            idempotencyKeys.eventId,
            gone.map((event) => event.id)
          )
        )
      )
}

/** One batch of events with everything recorded about them, in one short transaction; how many events went. */
const pruneEventBatch = (db: HistoryDatabase, ids: ReadonlyArray<string>, olderThan: Date): Promise<number> =>
  db.transaction(async (tx) => {
    const gone = await deleteSettledEvents(tx, ids, olderThan)
    if (gone.length === 0) return 0
    const goneIds = gone.map((event) => event.id)
    await deleteDeliveriesOf(tx, goneIds)
    await deleteAttemptsOf(tx, goneIds)
    await deleteIdempotencyKeysOf(tx, gone)
    return gone.length
  })

/** Deletes up to `limit` health transitions from before `olderThan`; how many went. */
const deleteOldHealthTransitions = (db: HistoryDatabase, olderThan: Date, limit: number) =>
  db
    .delete(healthTransitions)
    .where(
      inArray(
        healthTransitions.id,
        db.select({ id: healthTransitions.id }).from(healthTransitions).where(lt(healthTransitions.at, olderThan)).limit(limit)
      )
    )
    .returning({ id: healthTransitions.id })
    .then((rows) => rows.length)

/** Deletes up to `limit` audit entries from before `olderThan`; how many went. */
const deleteOldAuditEntries = (db: HistoryDatabase, olderThan: Date, limit: number) =>
  db
    .delete(auditLog)
    .where(inArray(auditLog.id, db.select({ id: auditLog.id }).from(auditLog).where(lt(auditLog.at, olderThan)).limit(limit)))
    .returning({ id: auditLog.id })
    .then((rows) => rows.length)

const make = (box: SecretBox.SecretBox["Type"]) => Effect.gen(function* () {
  const { db } = yield* Database
  const secrets = secretCodec(box)
  const fromRow = fromDestinationRow(secrets)
  const toRow = toDestinationRow(secrets)
  const query = <A>(what: string, run: (db: HistoryDatabase) => Promise<A>): Effect.Effect<A, HistoryUnavailable> =>
    Effect.tryPromise({
      try: () => run(db),
      catch: (cause) => new HistoryUnavailable({ message: `${what} failed: ${describeCause(cause)}` })
    })

  return HistoryStore.of({
    // Rows become destinations inside the query, so a secret that cannot be opened fails it with the reason.
    listDestinations: query("listing destinations", async (db) =>
      (await db.select().from(destinations).orderBy(asc(destinations.id))).map(fromRow)
    ),
    getDestination: (id) =>
      query(`reading destination ${id}`, async (db) =>
        Array.head((await db.select().from(destinations).where(eq(destinations.id, id))).map(fromRow))
      ),
    insertDestination: (destination) =>
      query(`creating destination ${destination.id}`, (db) =>
        db
          .insert(destinations)
          .values(toRow(destination))
          .onConflictDoNothing({ target: destinations.id })
          .returning({ id: destinations.id })
      ).pipe(
        Effect.filterOrFail(Array.isNonEmptyReadonlyArray, () => destinationExists(destination.id)),
        Effect.asVoid
      ),
    updateDestination: (destination) =>
      query(`updating destination ${destination.id}`, (db) => {
        const { id: _id, ...changes } = toRow(destination)
        return db.update(destinations).set(changes).where(eq(destinations.id, destination.id))
      }).pipe(Effect.asVoid),
    deleteDestination: (id) =>
      query(`deleting destination ${id}`, (db) =>
        db.delete(destinations).where(eq(destinations.id, id)).returning({ id: destinations.id })
      ).pipe(Effect.map(Array.isNonEmptyReadonlyArray)),
    insertEvents: (batch) =>
      batch.length === 0
        ? Effect.void
        : query(`storing ${batch.length} events`, (db) => db.transaction((tx) => insertEventRows(tx, batch))),
    applyFacts: (facts) =>
      facts.length === 0
        ? Effect.void
        : query(`applying ${facts.length} facts`, (db) => db.transaction((tx) => applyFactBatch(tx, facts))),
    getEvent: (id) => query(`reading event ${id}`, (db) => readEvent(db, id)),
    replayable: (destinationId, states, since) =>
      query(`reading replayable deliveries of ${destinationId}`, async (db) => {
        const rows = await db
          .select({ event: events })
          .from(deliveries)
          .innerJoin(events, eq(events.id, deliveries.eventId))
          .where(
            and(
              eq(deliveries.destinationId, destinationId),
              inArray(deliveries.state, [...states]),
              gte(deliveries.updatedAt, toDate(since))
            )
          )
          .orderBy(asc(events.streamSeq))
        return rows.map((row) => fromEventRow(row.event))
      }),
    countTypesBetween: (afterSeq, beforeSeq, receivedSince, destinationId) =>
      query(`counting events between stream sequences ${afterSeq} and ${beforeSeq}`, async (db) => {
        const rows = await db
          .select({
            type: events.type,
            count: sql<number>`count(*)::int`,
            firstAt: sql<Date>`min(${events.receivedAt})`,
            lastAt: sql<Date>`max(${events.receivedAt})`
          })
          .from(events)
          .where(
            and(
              gt(events.streamSeq, afterSeq),
              lt(events.streamSeq, beforeSeq),
              gte(events.receivedAt, toDate(receivedSince)),
              notExists(
                db
                  .select({ one: sql`1` })
                  .from(deliveries)
                  .where(and(eq(deliveries.eventId, events.id), eq(deliveries.destinationId, destinationId)))
              )
            )
          )
          .groupBy(events.type)
        return rows.map((row) => ({
          type: row.type,
          count: Number(row.count),
          firstAt: new Date(row.firstAt).toISOString(),
          lastAt: new Date(row.lastAt).toISOString()
        }))
      }),
    listEvents: (q) =>
      decodeCursor(q.cursor).pipe(Effect.flatMap((position) => query("listing events", (db) => listEvents(db, q, position, secrets)))),
    healthTimeline: (destinationId, limit) =>
      query(`reading the health of ${destinationId}`, (db) => healthTimeline(db, destinationId, limit)),
    listAudit: (q) =>
      decodeCursor(q.cursor).pipe(Effect.flatMap((position) => query("listing the audit log", (db) => listAudit(db, q, position)))),
    deliveryStats: (destinationId, now) =>
      query(`reading the delivery stats of ${destinationId}`, (db) => deliveryStats(db, destinationId, now)),
    prune: (olderThan, batchSize = PRUNE_BATCH_SIZE) => {
      // Each batch is its own short statement or transaction, so writers wait for at most
      // one batch, and an interruption (shutdown) stops between batches.
      const pruneEvents = Effect.gen(function* () {
        let total = 0
        let position = Option.none<Position>()
        for (;;) {
          const candidates = yield* query("reading events to prune", (db) =>
            selectPruneCandidates(db, olderThan, position, batchSize)
          )
          const last = candidates[candidates.length - 1]
          if (last === undefined) return total
          total += yield* query(`pruning ${candidates.length} events`, (db) =>
            pruneEventBatch(
              db,
              candidates.map((event) => event.id),
              olderThan
            )
          )
          if (candidates.length < batchSize) return total
          position = Option.some({ at: toIso(last.receivedAt), id: last.id })
        }
      })
      const untilShort = (deleteBatch: Effect.Effect<number, HistoryUnavailable>) =>
        Effect.gen(function* () {
          let total = 0
          for (;;) {
            const removed = yield* deleteBatch
            total += removed
            if (removed < batchSize) return total
          }
        })
      return Effect.all({
        events: pruneEvents,
        healthTransitions: untilShort(
          query("pruning health transitions", (db) => deleteOldHealthTransitions(db, olderThan, batchSize))
        ),
        auditEntries: untilShort(query("pruning the audit log", (db) => deleteOldAuditEntries(db, olderThan, batchSize)))
      })
    }
  })
})

/** The history store on the database the `Database` layer opened, sealing destination secrets with the `SecretBox`. */
export const layer: Layer.Layer<HistoryStore, never, Database | SecretBox.SecretBox> = Layer.effect(
  HistoryStore,
  Effect.flatMap(SecretBox.SecretBox, make)
)
