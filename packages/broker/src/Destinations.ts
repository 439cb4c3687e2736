/**
 * What operators do to destinations: create, change, remove. Each change is stored, applied
 * to this process's actors at once, announced to the other broker processes, and audited.
 */
import type { Destination as D } from "@sluice/protocol"
import { AdminApi, Destination, Envelope, Subjects } from "@sluice/protocol"
import { Clock, Context, Effect, Layer, Option } from "effect"
import * as DestinationActor from "./DestinationActor.js"
import * as Fact from "./Fact.js"
import type { HistoryUnavailable } from "./HistoryStore.js"
import { HistoryStore } from "./HistoryStore.js"
import { Nats } from "./Nats.js"
import { Recorder } from "./Recorder.js"
import * as Signer from "./Signer.js"
import { Supervisor } from "./Supervisor.js"

type Unavailable = AdminApi.Unavailable

export class Destinations extends Context.Tag("@sluice/broker/Destinations")<
  Destinations,
  {
    readonly list: Effect.Effect<ReadonlyArray<D.DestinationView>, Unavailable>
    readonly get: (id: string) => Effect.Effect<D.DestinationView, AdminApi.NotFound | Unavailable>
    readonly create: (
      input: D.CreateDestination,
      actor: string
    ) => Effect.Effect<typeof AdminApi.DestinationCreated.Type, AdminApi.Conflict | Unavailable>
    readonly update: (
      id: string,
      patch: D.UpdateDestination,
      actor: string
    ) => Effect.Effect<D.DestinationView, AdminApi.NotFound | Unavailable>
    readonly remove: (id: string, actor: string) => Effect.Effect<void, AdminApi.NotFound | Unavailable>
  }
>() {}

const unavailable = (error: HistoryUnavailable) => new AdminApi.Unavailable({ message: error.message })

/** Settings worth auditing: everything but the secret. */
const auditable = (d: D.Destination) => {
  const { secret: _secret, ...rest } = d
  return rest
}

const make = Effect.gen(function* () {
  const store = yield* HistoryStore
  const supervisor = yield* Supervisor
  const recorder = yield* Recorder
  const nats = yield* Nats

  const health = (d: D.Destination): D.Health => ({ state: "active", since: d.createdAt, reason: "created" })
  const view = (d: D.Destination) => Destination.toView(d, health(d))
  const nowIso = Clock.currentTimeMillis.pipe(Effect.map((ms) => new Date(ms).toISOString()))

  const changed = (id: string, action: string, actor: string, details: unknown) =>
    Effect.gen(function* () {
      yield* supervisor.reconcile(id)
      nats.connection.publish(Subjects.CONTROL_DESTINATIONS, id)
      yield* recorder.record(
        new Fact.OperatorActed({ id: Envelope.makeEventId(), at: yield* nowIso, actor, action, destinationId: id, details })
      )
    })

  const find = (id: string) =>
    store.getDestination(id).pipe(
      Effect.mapError(unavailable),
      Effect.flatMap(
        Option.match({
          onNone: () => Effect.fail(new AdminApi.NotFound({ message: `destination ${id} does not exist` })),
          onSome: Effect.succeed
        })
      )
    )

  return Destinations.of({
    list: store.listDestinations.pipe(
      Effect.mapError(unavailable),
      Effect.map((all) => all.map(view))
    ),
    get: (id) => find(id).pipe(Effect.map(view)),
    create: (input, actor) =>
      Effect.gen(function* () {
        const destination = Destination.makeDestination(input, {
          id: Envelope.makeEventId().toLowerCase(),
          secret: Signer.generateSecret(),
          now: yield* nowIso
        })
        yield* store.insertDestination(destination).pipe(
          Effect.catchTags({
            DestinationExists: () =>
              Effect.fail(new AdminApi.Conflict({ message: `destination ${destination.id} already exists` })),
            HistoryUnavailable: (error) => Effect.fail(unavailable(error))
          })
        )
        yield* changed(destination.id, "destination.created", actor, auditable(destination))
        return { ...view(destination), secret: destination.secret }
      }),
    update: (id, patch, actor) =>
      Effect.gen(function* () {
        const current = yield* find(id)
        const next = Destination.updateDestination(current, patch, yield* nowIso)
        yield* store.updateDestination(next).pipe(Effect.mapError(unavailable))
        yield* changed(id, "destination.updated", actor, patch)
        return view(next)
      }),
    remove: (id, actor) =>
      Effect.gen(function* () {
        const existed = yield* store.deleteDestination(id).pipe(Effect.mapError(unavailable))
        if (!existed) return yield* Effect.fail(new AdminApi.NotFound({ message: `destination ${id} does not exist` }))
        yield* changed(id, "destination.removed", actor, null)
        yield* DestinationActor.removeConsumer(id).pipe(
          Effect.provideService(Nats, nats),
          Effect.catchAll((error) => Effect.logWarning(`consumer of ${id} not removed`, error))
        )
      })
  })
})

export const layer: Layer.Layer<Destinations, never, HistoryStore | Supervisor | Recorder | Nats> = Layer.effect(
  Destinations,
  make
)
