/**
 * What operators do to destinations: create, change, remove. Each change is stored, applied
 * to this process's actors at once, announced to the other broker processes, and audited.
 */
import type { Destination as D } from "@sluice/protocol"
import { AdminApi, Destination, Envelope, Subjects } from "@sluice/protocol"
import { Clock, Context, Effect, Layer, Option } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"
import * as DestinationActor from "./DestinationActor.js"
import * as Fact from "./Fact.js"
import * as HealthMachine from "./HealthMachine.js"
import type { HealthUnavailable } from "./HealthStore.js"
import { KeyVersions } from "./KeyVersions.js"
import { Leases } from "./Leases.js"
import { LossLedger } from "./LossLedger.js"
import { HealthStore } from "./HealthStore.js"
import type { HistoryUnavailable } from "./HistoryStore.js"
import { HistoryStore } from "./HistoryStore.js"
import * as HttpSender from "./HttpSender.js"
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
    /** Refuses (`InvalidRequest` naming `url`) a URL on a non-public address unless allowed; see `HttpSender.urlRefusal`. */
    readonly create: (
      input: D.CreateDestination,
      actor: string
    ) => Effect.Effect<typeof AdminApi.DestinationCreated.Type, AdminApi.Conflict | AdminApi.InvalidRequest | Unavailable>
    readonly update: (
      id: string,
      patch: D.UpdateDestination,
      actor: string
    ) => Effect.Effect<D.DestinationView, AdminApi.NotFound | AdminApi.InvalidRequest | Unavailable>
    readonly remove: (id: string, actor: string) => Effect.Effect<void, AdminApi.NotFound | Unavailable>
    /**
     * A new signing secret, in effect for the next request wherever the actor runs; the old
     * one stops working at once. Answers the new secret, the only time it is shown.
     */
    readonly rotateSecret: (id: string, actor: string) => Effect.Effect<string, AdminApi.NotFound | Unavailable>
    /** An operator's pause, resume, enable or disable; applies within a second wherever the actor runs. */
    readonly act: (
      id: string,
      action: OperatorAction,
      actor: string
    ) => Effect.Effect<D.DestinationView, AdminApi.NotFound | Unavailable>
  }
>() {}

export type OperatorAction =
  | { readonly _tag: "pause" }
  | { readonly _tag: "resume" }
  | { readonly _tag: "enable" }
  | { readonly _tag: "disable"; readonly reason: string }

const inputFor = (action: OperatorAction, by: string): HealthMachine.Input => {
  switch (action._tag) {
    case "pause":
      return HealthMachine.Input.Paused({ by })
    case "resume":
      return HealthMachine.Input.Resumed({ by })
    case "enable":
      return HealthMachine.Input.Enabled({ by })
    case "disable":
      return HealthMachine.Input.Disabled({ by, reason: action.reason })
  }
}

/** The stored destination, as the admin API answers for it: 404 when there is none, 503 when the history is down. */
export const findDestination = (
  store: HistoryStore["Type"],
  id: string
): Effect.Effect<D.Destination, AdminApi.NotFound | Unavailable> =>
  store.getDestination(id).pipe(
    Effect.mapError(unavailable),
    Effect.flatMap(
      Option.match({
        onNone: () => Effect.fail(new AdminApi.NotFound({ message: `destination ${id} does not exist` })),
        onSome: Effect.succeed
      })
    )
  )

const unavailable = (error: HistoryUnavailable | HealthUnavailable) => new AdminApi.Unavailable({ message: error.message })

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

  const healthStore = yield* HealthStore
  const keyVersions = yield* KeyVersions
  const ledger = yield* LossLedger
  const leases = yield* Leases
  const view = (d: D.Destination) =>
    Effect.all([
      healthStore.get(d).pipe(Effect.mapError(unavailable)),
      // The alert is extra: a ledger that cannot be read does not hide the destination.
      ledger.peek(d.id).pipe(Effect.orElseSucceed(() => undefined)),
      leases.holder(d.id)
    ]).pipe(Effect.map(([status, lostEvents, owner]) => Destination.toView(d, HealthMachine.toHealth(status), { lostEvents, owner })))
  const nowIso = Clock.currentTimeMillis.pipe(Effect.map((ms) => new Date(ms).toISOString()))

  const changed = (id: string, action: string, actor: string, details: unknown) =>
    Effect.gen(function* () {
      yield* supervisor.reconcile(id)
      nats.connection.publish(Subjects.CONTROL_DESTINATIONS, id)
      yield* recorder.record(
        new Fact.OperatorActed({ id: Envelope.makeEventId(), at: yield* nowIso, actor, action, destinationId: id, details })
      )
    })

  const find = (id: string) => findDestination(store, id)

  const { allowPrivateDestinations } = yield* BrokerConfig
  /** The early answer to a URL on a non-public address; the sender refuses it at every connection too. */
  const checkUrl = (url: string) =>
    HttpSender.urlRefusal(url, { allowPrivateDestinations }).pipe(
      Effect.flatMap((refusal) =>
        refusal === undefined ? Effect.void : Effect.fail(new AdminApi.InvalidRequest({ field: "url", message: `url: ${refusal}` }))
      )
    )

  return Destinations.of({
    list: store.listDestinations.pipe(
      Effect.mapError(unavailable),
      Effect.flatMap((all) => Effect.forEach(all, view, { concurrency: 16 }))
    ),
    get: (id) => find(id).pipe(Effect.flatMap(view)),
    create: (input, actor) =>
      Effect.gen(function* () {
        yield* checkUrl(input.url)
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
        // The consumer exists before the answer, so every event published after it is delivered.
        yield* DestinationActor.ensureConsumer(destination).pipe(
          Effect.provideService(Nats, nats),
          Effect.catchAll((error) => Effect.logWarning(`consumer of ${destination.id} not created yet`, error))
        )
        yield* changed(destination.id, "destination.created", actor, auditable(destination))
        return { ...(yield* view(destination)), secret: destination.secret }
      }),
    update: (id, patch, actor) =>
      Effect.gen(function* () {
        const current = yield* find(id)
        if (patch.url !== undefined && patch.url !== current.url) yield* checkUrl(patch.url)
        const next = Destination.updateDestination(current, patch, yield* nowIso)
        yield* store.updateDestination(next).pipe(Effect.mapError(unavailable))
        yield* changed(id, "destination.updated", actor, patch)
        return yield* view(next)
      }),
    remove: (id, actor) =>
      Effect.gen(function* () {
        const existed = yield* store.deleteDestination(id).pipe(Effect.mapError(unavailable))
        if (!existed) return yield* Effect.fail(new AdminApi.NotFound({ message: `destination ${id} does not exist` }))
        yield* changed(id, "destination.removed", actor, null)
        yield* healthStore.remove(id).pipe(Effect.catchAll((error) => Effect.logWarning(`health of ${id} not removed`, error)))
        yield* ledger.forget(id).pipe(Effect.catchAll((error) => Effect.logWarning(`losses of ${id} not forgotten`, error)))
        yield* keyVersions
          .forget(id)
          .pipe(Effect.catchAll((error) => Effect.logWarning(`delivered versions of ${id} not forgotten`, error)))
        yield* DestinationActor.removeConsumer(id).pipe(
          Effect.provideService(Nats, nats),
          Effect.catchAll((error) => Effect.logWarning(`consumer of ${id} not removed`, error))
        )
      }),
    rotateSecret: (id, actor) =>
      Effect.gen(function* () {
        const current = yield* find(id)
        const next = { ...current, secret: Signer.generateSecret(), updatedAt: yield* nowIso }
        yield* store.updateDestination(next).pipe(Effect.mapError(unavailable))
        yield* changed(id, "destination.secret_rotated", actor, { secretHint: Destination.secretHint(next.secret) })
        return next.secret
      }),
    act: (id, action, actor) =>
      Effect.gen(function* () {
        const destination = yield* find(id)
        const result = yield* healthStore.apply(destination, inputFor(action, actor)).pipe(Effect.mapError(unavailable))
        yield* recorder.record(
          new Fact.OperatorActed({
            id: Envelope.makeEventId(),
            at: yield* nowIso,
            actor,
            action: `destination.${action._tag}`,
            destinationId: id,
            details: result.change
          })
        )
        return Destination.toView(destination, HealthMachine.toHealth(result.status), { owner: yield* leases.holder(id) })
      })
  })
})

export const layer: Layer.Layer<
  Destinations,
  never,
  HistoryStore | Supervisor | Recorder | Nats | HealthStore | KeyVersions | LossLedger | Leases | BrokerConfig
> = Layer.effect(
  Destinations,
  make
)
