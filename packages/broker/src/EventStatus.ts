/**
 * The per-destination status of one event. History holds a delivery row from the first
 * attempt on; before that, every destination that subscribed to the event owes it a
 * delivery, which is shown as `queued`.
 */
import type { Destination, History } from "@sluice/protocol"
import { Subjects } from "@sluice/protocol"

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
