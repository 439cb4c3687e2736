/**
 * The history: destination configuration, every event, and what happened to it at each
 * destination. The broker writes facts in batches; the admin API reads. `PgHistoryStore`
 * is the database adapter; `layerMemory` here serves unit tests of other modules.
 *
 * Facts may be applied twice or out of order (across batches), so applying them is
 * idempotent and the newest fact decides a delivery's state:
 * - a delivery's state and the fields its fact carries are replaced only by a fact at
 *   least as new (`updatedAt`); `attempts` only grows; `createdAt` is the earliest seen;
 * - an attempt, a health transition or an audit entry is recorded once per fact id.
 */
import type { AdminApi, Destination, History } from "@sluice/protocol"
import { States, Subjects } from "@sluice/protocol"
import { Context, Effect, Layer, Option } from "effect"
import { owesDelivery } from "./EventStatus.js"
import type { AttemptFinished, DeliveryChanged, Fact } from "./Fact.js"
import { DestinationExists, type HistoryUnavailable, InvalidCursor } from "./HistoryError.js"

/** The errors of the interface below, importable with it. */
export { DestinationExists, HistoryUnavailable, InvalidCursor } from "./HistoryError.js"

/** Filters of the audit log, as `GET /audit` takes them. */
export type AuditQuery = typeof AdminApi.AuditQuery.Type

/** What the history knows of a destination's deliveries; the backlog comes from JetStream. */
export type DeliveryStats = Omit<History.DestinationStats, "destinationId" | "backlog">

/** Reads and writes of the history; every write call is one transaction. */
export class HistoryStore extends Context.Tag("@sluice/broker/HistoryStore")<
  HistoryStore,
  {
    readonly listDestinations: Effect.Effect<ReadonlyArray<Destination.Destination>, HistoryUnavailable>
    readonly getDestination: (id: string) => Effect.Effect<Option.Option<Destination.Destination>, HistoryUnavailable>
    readonly insertDestination: (
      destination: Destination.Destination
    ) => Effect.Effect<void, DestinationExists | HistoryUnavailable>
    /** Replaces the destination with this id; does nothing when there is none. */
    readonly updateDestination: (destination: Destination.Destination) => Effect.Effect<void, HistoryUnavailable>
    /** True when the destination existed. */
    readonly deleteDestination: (id: string) => Effect.Effect<boolean, HistoryUnavailable>
    /** Stores events not stored yet; an id already present is left as it is. */
    readonly insertEvents: (events: ReadonlyArray<History.StoredEvent>) => Effect.Effect<void, HistoryUnavailable>
    readonly applyFacts: (facts: ReadonlyArray<Fact>) => Effect.Effect<void, HistoryUnavailable>
    /** The event with every delivery it has, each with its attempts, oldest first. */
    readonly getEvent: (id: string) => Effect.Effect<Option.Option<History.EventDetail>, HistoryUnavailable>
    /** Events whose delivery to the destination is in one of `states`, last changed at or after `since`, oldest first. */
    readonly replayable: (
      destinationId: string,
      states: ReadonlyArray<States.DeliveryState>,
      since: string
    ) => Effect.Effect<ReadonlyArray<History.StoredEvent>, HistoryUnavailable>
    /**
     * The events stored with a stream sequence strictly between `afterSeq` and `beforeSeq`,
     * received at or after `receivedSince`, without a delivery to `destinationId`, counted
     * per type: how many events of a range that left the stream a destination never took.
     */
    readonly countTypesBetween: (
      afterSeq: number,
      beforeSeq: number,
      receivedSince: string,
      destinationId: string
    ) => Effect.Effect<ReadonlyArray<TypeCount>, HistoryUnavailable>
    /**
     * Events newest first (by `receivedAt`, then id). `destination` and `state` match an
     * event by its deliveries as `toSummary` shows them, owed-but-unattempted ones as `queued`.
     */
    readonly listEvents: (query: History.EventQuery) => Effect.Effect<History.EventPage, InvalidCursor | HistoryUnavailable>
    /** The destination's latest health transitions, newest first. */
    readonly healthTimeline: (
      destinationId: string,
      limit: number
    ) => Effect.Effect<ReadonlyArray<History.HealthTransition>, HistoryUnavailable>
    /** Audit entries newest first, optionally of one destination. */
    readonly listAudit: (query: AuditQuery) => Effect.Effect<History.AuditPage, InvalidCursor | HistoryUnavailable>
    /**
     * Deliveries per stored state, latency percentiles of successful attempts over the
     * `latencyWindows` ending at `now` (epoch ms), and attempts per minute over `throughputSpan(now)`.
     */
    readonly deliveryStats: (destinationId: string, now: number) => Effect.Effect<DeliveryStats, HistoryUnavailable>
    /**
     * Removes what happened before `olderThan`: events received before it with their
     * deliveries, attempts and idempotency keys — except events with a delivery still in
     * flight (queued, processing, errored) — and older health transitions and audit entries.
     * Works through at most `batchSize` events or entries at a time, each batch in its own
     * short statement or transaction, so writers never wait long behind it.
     */
    readonly prune: (olderThan: Date, batchSize?: number) => Effect.Effect<Pruned, HistoryUnavailable>
  }
>() {}

/** What one `prune` removed, for the log. */
/** Events of one type in a range: how many, and when the first and the last were received. */
export interface TypeCount {
  readonly type: string
  readonly count: number
  readonly firstAt: string
  readonly lastAt: string
}

export interface Pruned {
  readonly events: number
  readonly healthTransitions: number
  readonly auditEntries: number
}

/** Rows per pruning statement when the caller names no other. */
export const PRUNE_BATCH_SIZE = 1000

/** Page size of the lists when the query names none. */
export const DEFAULT_PAGE_SIZE = 50

/** Where a newest-first list stopped: the last item's time and id (the id orders items of the same time). */
export interface Position {
  readonly at: string
  readonly id: string
}

const isCanonicalTimestamp = (s: string): boolean => !Number.isNaN(Date.parse(s)) && new Date(s).toISOString() === s

/** Opaque to clients: base64url of `<time>|<id>`. */
export const encodeCursor = (position: Position): string =>
  Buffer.from(`${position.at}|${position.id}`, "utf8").toString("base64url")

/** The position a cursor from `encodeCursor` names; anything else fails. */
export const decodeCursor = (cursor: string | undefined): Effect.Effect<Option.Option<Position>, InvalidCursor> => {
  if (cursor === undefined) return Effect.succeed(Option.none())
  const text = Buffer.from(cursor, "base64url").toString("utf8")
  const separator = text.indexOf("|")
  const position = { at: text.slice(0, separator), id: text.slice(separator + 1) }
  return separator > 0 && position.id !== "" && isCanonicalTimestamp(position.at) && encodeCursor(position) === cursor
    ? Effect.succeed(Option.some(position))
    : Effect.fail(new InvalidCursor({ message: "is not a cursor this list handed out" }))
}

/** A page of the first `limit` of `rows`, which were fetched with one more to tell whether another page follows. */
export const toPage = <A>(
  rows: ReadonlyArray<A>,
  limit: number,
  positionOf: (item: A) => Position
): { readonly items: ReadonlyArray<A>; readonly nextCursor: string | null } => {
  const items = rows.slice(0, limit)
  const last = items[items.length - 1]
  return { items, nextCursor: rows.length > limit && last !== undefined ? encodeCursor(positionOf(last)) : null }
}

type DeliveryLine = History.EventSummary["deliveries"][number]

/** The list row of an event: its stored deliveries and, as `queued`, those owed to destinations but not attempted yet. */
export const toSummary = (
  event: History.StoredEvent,
  stored: ReadonlyArray<DeliveryLine>,
  destinations: ReadonlyArray<Destination.Destination>
): History.EventSummary => {
  const known = new Set(stored.map((d) => d.destinationId))
  const owed = destinations
    .filter((d) => !known.has(d.id) && owesDelivery(d, event))
    .map((d): DeliveryLine => ({ destinationId: d.id, state: "queued", attempts: 0, updatedAt: event.receivedAt }))
  const { id, type, key, version, occurredAt, receivedAt, duplicateOf } = event
  return {
    id,
    type,
    key,
    version,
    occurredAt,
    receivedAt,
    duplicateOf,
    deliveries: [...stored, ...owed].sort((a, b) => a.destinationId.localeCompare(b.destinationId))
  }
}

/** The windows latency percentiles are taken over, each ending now. */
export const latencyWindows = [
  { window: "5m", ms: 5 * 60_000 },
  { window: "1h", ms: 60 * 60_000 },
  { window: "24h", ms: 24 * 60 * 60_000 }
] as const

/** The throughput chart's resolution. */
export const MINUTE_MS = 60_000
const THROUGHPUT_MINUTES = 60

/** The epoch millisecond the minute of `ms` starts at. */
export const minuteOf = (ms: number): number => Math.floor(ms / MINUTE_MS) * MINUTE_MS

/** What the throughput chart covers: the 60 minutes up to the end of the one `now` is in (epoch ms, `to` excluded). */
export const throughputSpan = (now: number): { readonly from: number; readonly to: number } => {
  const to = minuteOf(now) + MINUTE_MS
  return { from: to - THROUGHPUT_MINUTES * MINUTE_MS, to }
}

/** One point per minute of the span, oldest first, zeros where nothing was counted. Attempts that did not succeed count as failed. */
export const throughputPoints = (
  now: number,
  counted: ReadonlyMap<number, { readonly succeeded: number; readonly failed: number }>
): ReadonlyArray<History.ThroughputPoint> =>
  Array.from({ length: THROUGHPUT_MINUTES }, (_, i) => {
    const minute = throughputSpan(now).from + i * MINUTE_MS
    return { at: new Date(minute).toISOString(), ...(counted.get(minute) ?? { succeeded: 0, failed: 0 }) }
  })

/** Every delivery state with its count, zero when absent. */
export const stateCounts = (counted: Iterable<readonly [States.DeliveryState, number]>): DeliveryStats["states"] => {
  const counts = Object.fromEntries(States.DeliveryState.literals.map((state) => [state, 0])) as Record<States.DeliveryState, number>
  for (const [state, n] of counted) counts[state] += n
  return counts
}

/** The error `insertDestination` fails with when the id is taken. */
export const destinationExists = (id: string): DestinationExists =>
  new DestinationExists({ id, message: `destination ${id} already exists` })

/** Timestamps are kept the way the database gives them back: `toISOString()`. */
const isoTimestamp = (timestamp: string): string => new Date(timestamp).toISOString()

const isAtLeastAsNew = (incoming: string, stored: string): boolean => Date.parse(incoming) >= Date.parse(stored)

const earliest = (a: string, b: string): string => (Date.parse(a) <= Date.parse(b) ? a : b)
const latest = (a: string, b: string): string => (Date.parse(a) >= Date.parse(b) ? a : b)

/** When an attempt's outcome became known: the delivery's `updatedAt` for that attempt. */
export const attemptFinishedAt = (fact: AttemptFinished): string =>
  new Date(Date.parse(fact.startedAt) + fact.durationMs).toISOString()

const deliveryAfterAttempt = (stored: History.Delivery | undefined, fact: AttemptFinished): History.Delivery => {
  const carried = {
    state: fact.state,
    lastStatusCode: fact.statusCode,
    lastError: fact.error,
    nextAttemptAt: fact.nextAttemptAt === null ? null : isoTimestamp(fact.nextAttemptAt)
  }
  const createdAt = isoTimestamp(fact.startedAt)
  const updatedAt = attemptFinishedAt(fact)
  if (stored === undefined) {
    const { eventId, destinationId, attempt } = fact
    return { eventId, destinationId, ...carried, attempts: attempt, canceledBy: null, duplicateOf: null, ignoredReason: null, createdAt, updatedAt }
  }
  return {
    ...stored,
    ...(isAtLeastAsNew(updatedAt, stored.updatedAt) ? carried : {}),
    attempts: Math.max(stored.attempts, fact.attempt),
    createdAt: earliest(stored.createdAt, createdAt),
    updatedAt: latest(stored.updatedAt, updatedAt)
  }
}

const deliveryAfterChange = (stored: History.Delivery | undefined, fact: DeliveryChanged): History.Delivery => {
  const { state, canceledBy, duplicateOf, ignoredReason } = fact
  const carried = { state, canceledBy, duplicateOf, ignoredReason, nextAttemptAt: null }
  const at = isoTimestamp(fact.at)
  if (stored === undefined) {
    const { eventId, destinationId } = fact
    return { eventId, destinationId, ...carried, attempts: 0, lastStatusCode: null, lastError: fact.reason, createdAt: at, updatedAt: at }
  }
  const newer = isAtLeastAsNew(at, stored.updatedAt)
  return {
    ...stored,
    ...(newer ? carried : {}),
    lastError: newer && fact.reason !== null ? fact.reason : stored.lastError,
    createdAt: earliest(stored.createdAt, at),
    updatedAt: latest(stored.updatedAt, at)
  }
}

interface AttemptRecord extends History.Attempt {
  readonly eventId: string
  readonly destinationId: string
}

/** Postgres' `percentile_cont`: linear interpolation between the two nearest of the sorted values. */
const percentileCont = (sorted: ReadonlyArray<number>, fraction: number): number | null => {
  if (sorted.length === 0) return null
  const position = fraction * (sorted.length - 1)
  const below = sorted[Math.floor(position)]!
  const above = sorted[Math.ceil(position)]!
  return below + (position - Math.floor(position)) * (above - below)
}

/** Newest first, by time then id, as the lists page. */
const newestFirst = (a: Position, b: Position): number =>
  Date.parse(b.at) - Date.parse(a.at) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)

/** Whether `item` comes after the cursor's position in a newest-first list. */
const isAfter = (position: Option.Option<Position>, item: Position): boolean =>
  Option.isNone(position) || newestFirst(position.value, item) < 0

/** In-memory history for unit tests of the modules that use it. */
export const layerMemory: Layer.Layer<HistoryStore> = Layer.sync(HistoryStore, () => {
  const destinations = new Map<string, Destination.Destination>()
  const events = new Map<string, History.StoredEvent>()
  const idempotencyKeys = new Map<string, string>()
  const deliveries = new Map<string, History.Delivery>()
  const attempts = new Map<string, AttemptRecord>()
  const transitions = new Map<string, History.HealthTransition & { readonly destinationId: string }>()
  const audit = new Map<string, History.AuditEntry>()
  const deliveryKey = (eventId: string, destinationId: string) => `${eventId}\u0000${destinationId}`

  const applyFact = (fact: Fact): void => {
    switch (fact._tag) {
      case "AttemptFinished": {
        const { id, eventId, destinationId, attempt, durationMs, outcome, statusCode, error, responseExcerpt } = fact
        if (!attempts.has(id)) {
          const startedAt = isoTimestamp(fact.startedAt)
          attempts.set(id, { eventId, destinationId, attempt, startedAt, durationMs, outcome, statusCode, error, responseExcerpt })
        }
        const key = deliveryKey(eventId, destinationId)
        deliveries.set(key, deliveryAfterAttempt(deliveries.get(key), fact))
        return
      }
      case "DeliveryChanged": {
        const key = deliveryKey(fact.eventId, fact.destinationId)
        deliveries.set(key, deliveryAfterChange(deliveries.get(key), fact))
        return
      }
      case "HealthChanged": {
        const { id, destinationId, from, to, reason } = fact
        if (!transitions.has(id)) transitions.set(id, { id, destinationId, from, to, reason, at: isoTimestamp(fact.at) })
        return
      }
      case "OperatorActed": {
        const { id, actor, action, destinationId, details } = fact
        if (!audit.has(id)) audit.set(id, { id, at: isoTimestamp(fact.at), actor, action, destinationId, details: details ?? null })
        return
      }
    }
  }

  const summaryOf = (event: History.StoredEvent): History.EventSummary =>
    toSummary(
      event,
      Array.from(deliveries.values())
        .filter((d) => d.eventId === event.id)
        .map(({ destinationId, state, attempts, updatedAt }) => ({ destinationId, state, attempts, updatedAt })),
      Array.from(destinations.values())
    )

  const matchesEventQuery = (query: History.EventQuery) => (summary: History.EventSummary): boolean => {
    const receivedAt = Date.parse(summary.receivedAt)
    return (
      (query.type === undefined || Subjects.matchesPattern(query.type, summary.type)) &&
      (query.key === undefined || summary.key === query.key) &&
      (query.since === undefined || receivedAt >= Date.parse(query.since)) &&
      (query.until === undefined || receivedAt < Date.parse(query.until)) &&
      ((query.destination === undefined && query.state === undefined) ||
        summary.deliveries.some(
          (d) =>
            (query.destination === undefined || d.destinationId === query.destination) &&
            (query.state === undefined || d.state === query.state)
        ))
    )
  }

  const successfulDurations = (destinationId: string, from: number, to: number): ReadonlyArray<number> =>
    Array.from(attempts.values())
      .filter((a) => {
        const startedAt = Date.parse(a.startedAt)
        return a.destinationId === destinationId && a.outcome === "success" && startedAt >= from && startedAt <= to
      })
      .map((a) => a.durationMs)
      .sort((a, b) => a - b)

  const attemptLog = (delivery: History.Delivery): ReadonlyArray<History.Attempt> =>
    Array.from(attempts.values())
      .filter((a) => a.eventId === delivery.eventId && a.destinationId === delivery.destinationId)
      .sort((a, b) => Date.parse(a.startedAt) - Date.parse(b.startedAt))
      .map(({ eventId: _eventId, destinationId: _destinationId, ...attempt }) => attempt)

  return HistoryStore.of({
    listDestinations: Effect.sync(() => Array.from(destinations.values()).sort((a, b) => a.id.localeCompare(b.id))),
    getDestination: (id) => Effect.sync(() => Option.fromNullable(destinations.get(id))),
    insertDestination: (destination) =>
      Effect.suspend(() => {
        if (destinations.has(destination.id)) return Effect.fail(destinationExists(destination.id))
        destinations.set(destination.id, destination)
        return Effect.void
      }),
    updateDestination: (destination) =>
      Effect.sync(() => {
        if (destinations.has(destination.id)) destinations.set(destination.id, destination)
      }),
    deleteDestination: (id) => Effect.sync(() => destinations.delete(id)),
    insertEvents: (batch) =>
      Effect.sync(() => {
        for (const event of batch) {
          if (events.has(event.id)) continue
          const occurredAt = isoTimestamp(event.occurredAt)
          const first = event.idempotencyKey === null ? undefined : idempotencyKeys.get(event.idempotencyKey)
          if (event.idempotencyKey !== null && first === undefined) idempotencyKeys.set(event.idempotencyKey, event.id)
          events.set(event.id, {
            ...event,
            occurredAt,
            receivedAt: isoTimestamp(event.receivedAt),
            data: event.data ?? null,
            duplicateOf: first ?? null
          })
        }
      }),
    applyFacts: (facts) => Effect.sync(() => facts.forEach(applyFact)),
    replayable: (destinationId, states, since) =>
      Effect.sync(() =>
        Array.from(deliveries.values())
          .filter(
            (d) => d.destinationId === destinationId && states.includes(d.state) && Date.parse(d.updatedAt) >= Date.parse(since)
          )
          .flatMap((d) => {
            const event = events.get(d.eventId)
            return event === undefined ? [] : [event]
          })
          .sort((a, b) => a.streamSeq - b.streamSeq)
      ),
    countTypesBetween: (afterSeq, beforeSeq, receivedSince, destinationId) =>
      Effect.sync(() => {
        const byType = new Map<string, TypeCount>()
        for (const e of events.values()) {
          if (e.streamSeq <= afterSeq || e.streamSeq >= beforeSeq || Date.parse(e.receivedAt) < Date.parse(receivedSince)) continue
          if (deliveries.has(deliveryKey(e.id, destinationId))) continue
          const seen = byType.get(e.type)
          byType.set(e.type, {
            type: e.type,
            count: (seen?.count ?? 0) + 1,
            firstAt: seen === undefined || e.receivedAt < seen.firstAt ? e.receivedAt : seen.firstAt,
            lastAt: seen === undefined || e.receivedAt > seen.lastAt ? e.receivedAt : seen.lastAt
          })
        }
        return Array.from(byType.values())
      }),
    listEvents: (query) =>
      decodeCursor(query.cursor).pipe(
        Effect.map((position) => {
          const limit = query.limit ?? DEFAULT_PAGE_SIZE
          const rows = Array.from(events.values())
            .map(summaryOf)
            .filter(matchesEventQuery(query))
            .filter((e) => isAfter(position, { at: e.receivedAt, id: e.id }))
            .sort((a, b) => newestFirst({ at: a.receivedAt, id: a.id }, { at: b.receivedAt, id: b.id }))
          return toPage(rows.slice(0, limit + 1), limit, (e) => ({ at: e.receivedAt, id: e.id }))
        })
      ),
    healthTimeline: (destinationId, limit) =>
      Effect.sync(() =>
        Array.from(transitions.values())
          .filter((t) => t.destinationId === destinationId)
          .sort(newestFirst)
          .slice(0, limit)
          .map(({ destinationId: _destinationId, ...transition }) => transition)
      ),
    listAudit: (query) =>
      decodeCursor(query.cursor).pipe(
        Effect.map((position) => {
          const limit = query.limit ?? DEFAULT_PAGE_SIZE
          const rows = Array.from(audit.values())
            .filter((entry) => query.destination === undefined || entry.destinationId === query.destination)
            .filter((entry) => isAfter(position, entry))
            .sort(newestFirst)
          return toPage(rows.slice(0, limit + 1), limit, (entry) => entry)
        })
      ),
    deliveryStats: (destinationId, now) =>
      Effect.sync(() => {
        const counted = new Map<number, { succeeded: number; failed: number }>()
        const span = throughputSpan(now)
        for (const a of attempts.values()) {
          const startedAt = Date.parse(a.startedAt)
          if (a.destinationId !== destinationId || startedAt < span.from || startedAt >= span.to) continue
          const minute = minuteOf(startedAt)
          const point = counted.get(minute) ?? { succeeded: 0, failed: 0 }
          if (a.outcome === "success") point.succeeded += 1
          else point.failed += 1
          counted.set(minute, point)
        }
        return {
          states: stateCounts(
            Array.from(deliveries.values())
              .filter((d) => d.destinationId === destinationId)
              .map((d) => [d.state, 1] as const)
          ),
          latency: latencyWindows.map(({ window, ms }) => {
            const durations = successfulDurations(destinationId, now - ms, now)
            return { window, count: durations.length, p50Ms: percentileCont(durations, 0.5), p99Ms: percentileCont(durations, 0.99) }
          }),
          throughput: throughputPoints(now, counted)
        }
      }),
    prune: (olderThan) =>
      Effect.sync(() => {
        const before = (timestamp: string) => Date.parse(timestamp) < olderThan.getTime()
        const inFlight = new Set(
          Array.from(deliveries.values())
            .filter((d) => !States.isFinalDeliveryState(d.state))
            .map((d) => d.eventId)
        )
        const pruned = { events: 0, healthTransitions: 0, auditEntries: 0 }
        for (const event of events.values()) {
          if (!before(event.receivedAt) || inFlight.has(event.id)) continue
          events.delete(event.id)
          pruned.events += 1
          if (event.idempotencyKey !== null && idempotencyKeys.get(event.idempotencyKey) === event.id) {
            idempotencyKeys.delete(event.idempotencyKey)
          }
          for (const [key, d] of deliveries) if (d.eventId === event.id) deliveries.delete(key)
          for (const [key, a] of attempts) if (a.eventId === event.id) attempts.delete(key)
        }
        for (const [id, t] of transitions) {
          if (before(t.at)) {
            transitions.delete(id)
            pruned.healthTransitions += 1
          }
        }
        for (const [id, entry] of audit) {
          if (before(entry.at)) {
            audit.delete(id)
            pruned.auditEntries += 1
          }
        }
        return pruned
      }),
    getEvent: (id) =>
      Effect.sync(() =>
        Option.fromNullable(events.get(id)).pipe(
          Option.map((event) => ({
            event,
            deliveries: Array.from(deliveries.values())
              .filter((d) => d.eventId === id)
              .sort((a, b) => a.destinationId.localeCompare(b.destinationId))
              .map((delivery) => ({ ...delivery, attemptLog: attemptLog(delivery) }))
          }))
        )
      )
  })
})
