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
import type { Destination, History } from "@sluice/protocol"
import { Context, Effect, Layer, Option } from "effect"
import type { AttemptFinished, DeliveryChanged, Fact } from "./Fact.js"
import { DestinationExists, type HistoryUnavailable } from "./HistoryError.js"

/** The errors of the interface below, importable with it. */
export { DestinationExists, HistoryUnavailable } from "./HistoryError.js"

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
  }
>() {}

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

/**
 * In-memory history for unit tests of the modules that use it. Health transitions and
 * audit entries are accepted and dropped: nothing in the interface reads them back.
 */
export const layerMemory: Layer.Layer<HistoryStore> = Layer.sync(HistoryStore, () => {
  const destinations = new Map<string, Destination.Destination>()
  const events = new Map<string, History.StoredEvent>()
  const deliveries = new Map<string, History.Delivery>()
  const attempts = new Map<string, AttemptRecord>()
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
      case "HealthChanged":
      case "OperatorActed":
        return
    }
  }

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
          events.set(event.id, { ...event, occurredAt, receivedAt: isoTimestamp(event.receivedAt), data: event.data ?? null })
        }
      }),
    applyFacts: (facts) => Effect.sync(() => facts.forEach(applyFact)),
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
