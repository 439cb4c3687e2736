/**
 * The per-destination status of one event. History holds a delivery row from the first
 * attempt on; before that, every destination that subscribed to the event owes it a
 * delivery, which is shown as `queued`. The operator's `GET /events/:id` and the producer's
 * `GET /events/:id/status` read it the same way.
 */
import type { Destination, History } from "@sluice/protocol"
import { AdminApi, States, Subjects } from "@sluice/protocol"
import { Effect, Option } from "effect"
import type { HistoryStore } from "./HistoryStore.js"

/** Whether the destination owes the event a delivery: it existed when the event arrived and subscribes to its type. */
export const owesDelivery = (
  destination: Destination.Destination,
  event: { readonly type: string; readonly receivedAt: string }
): boolean =>
  Date.parse(destination.createdAt) <= Date.parse(event.receivedAt) &&
  Subjects.matchesAny(destination.subscriptions, event.type)

export const withPendingDeliveries = (
  detail: History.EventDetail,
  destinations: ReadonlyArray<Destination.Destination>
): History.EventDetail => {
  const known = new Set(detail.deliveries.map((d) => d.destinationId))
  const pending = destinations
    .filter((d) => !known.has(d.id) && owesDelivery(d, detail.event))
    .map(
      (d): History.DeliveryDetail => ({
        eventId: detail.event.id,
        destinationId: d.id,
        state: "queued",
        attempts: 0,
        lastStatusCode: null,
        lastError: null,
        canceledBy: null,
        duplicateOf: null,
        ignoredReason: null,
        nextAttemptAt: null,
        createdAt: detail.event.receivedAt,
        updatedAt: detail.event.receivedAt,
        attemptLog: []
      })
    )
  return pending.length === 0 ? detail : { ...detail, deliveries: [...detail.deliveries, ...pending] }
}

/** An event as the history recorded it, and every destination that might owe it a delivery. */
export interface RecordedEvent {
  readonly detail: History.EventDetail
  readonly destinations: ReadonlyArray<Destination.Destination>
}

/** Reads an event for either endpoint: 404 until the history recorded it, 503 while the history is down. */
export const recordedEvent = (
  store: HistoryStore["Type"],
  id: string
): Effect.Effect<RecordedEvent, AdminApi.NotFound | AdminApi.Unavailable> => {
  const unavailable = (error: { readonly message: string }) => new AdminApi.Unavailable({ message: error.message })
  return Effect.gen(function* () {
    const detail = yield* store.getEvent(id).pipe(Effect.mapError(unavailable))
    if (Option.isNone(detail)) {
      return yield* Effect.fail(new AdminApi.NotFound({ message: `event ${id} is not in the history (yet)` }))
    }
    const destinations = yield* store.listDestinations.pipe(Effect.mapError(unavailable))
    return { detail: detail.value, destinations }
  })
}

/**
 * The producer's view: each delivery's state without payloads or responses; a delivery
 * still owed has no history row, so no `updatedAt`.
 */
export const eventStatus = ({ destinations, detail }: RecordedEvent): AdminApi.EventStatus => {
  const recorded = new Set(detail.deliveries.map((d) => d.destinationId))
  const deliveries = withPendingDeliveries(detail, destinations).deliveries.map(
    (d): AdminApi.DeliveryStatus => ({
      destinationId: d.destinationId,
      state: d.state,
      attempts: d.attempts,
      updatedAt: recorded.has(d.destinationId) ? d.updatedAt : null
    })
  )
  return {
    id: detail.event.id,
    receivedAt: detail.event.receivedAt,
    settled: deliveries.every((d) => States.isFinalDeliveryState(d.state)),
    deliveries
  }
}
