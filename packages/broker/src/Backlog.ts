/**
 * What waits in JetStream for a destination, read from its durable consumer: the admin
 * API's stats and the `sluice_backlog` gauge both show it.
 */
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { AdminApi, Subjects } from "@sluice/protocol"
import { Effect } from "effect"
import type { Nats } from "./Nats.js"

/** Events not yet handed to the destination's actor (`pending`) and held by it unacknowledged (`held`). */
export interface Backlog {
  readonly pending: number
  readonly held: number
}

/** The destination's backlog now; none waits for a destination whose consumer does not exist yet. */
export const backlogOf = (nats: Nats["Type"], destinationId: string): Effect.Effect<Backlog, AdminApi.Unavailable> =>
  Effect.tryPromise(() => nats.jsm.consumers.info(Subjects.EVENTS_STREAM, Subjects.destinationConsumer(destinationId))).pipe(
    Effect.map((info) => ({ pending: info.num_pending, held: info.num_ack_pending })),
    // No consumer yet: the actor has not started, so nothing waits for it.
    Effect.catchIf(
      (error) => error.error instanceof JetStreamApiError && error.error.code === JetStreamApiCodes.ConsumerNotFound,
      () => Effect.succeed({ pending: 0, held: 0 })
    ),
    Effect.mapError((error) => new AdminApi.Unavailable({ message: `JetStream unavailable: ${String(error.error)}` }))
  )
