/**
 * History facts as they are recorded, by any broker process, for what watches the present:
 * the metrics and the admin UI's fact stream. A plain NATS subscription on the facts
 * subjects sees each fact as the recorder publishes it to JetStream, without a consumer to
 * manage; it is not durable: facts published while the connection is down are missed, and a
 * fact republished after a lost acknowledgement is seen twice. The history writer, not
 * this, is the record.
 */
import { Subjects } from "@sluice/protocol"
import type { Scope } from "effect"
import { Effect, Either, Runtime } from "effect"
import * as Fact from "./Fact.js"
import type { Nats } from "./Nats.js"

/**
 * Calls `onFact` with every fact recorded from now on, until the scope closes. Returns once
 * the NATS server has the subscription (waiting for the connection if it is down), so every
 * fact recorded after that is seen.
 */
export const subscribe = (
  nats: Nats["Type"],
  onFact: (fact: Fact.Fact) => void
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const warn = (message: string): void => {
      runFork(Effect.logWarning(message).pipe(Effect.annotateLogs({ module: "FactFeed" })))
    }
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        nats.connection.subscribe(Subjects.FACTS_WILDCARD, {
          callback: (error, msg) => {
            if (error !== null) return warn(`fact subscription failed: ${String(error)}`)
            Either.match(Fact.decodeAll(msg.string()), {
              onLeft: (decodeError) => warn(`skipping an undecodable fact on ${msg.subject}: ${decodeError.message}`),
              onRight: (facts) => facts.forEach((fact) => onFact(fact))
            })
          }
        })
      ),
      (subscription) => Effect.sync(() => subscription.unsubscribe())
    )
    // Only a closing connection refuses the ping: the broker is stopping then.
    yield* Effect.tryPromise(() => nats.connection.flush()).pipe(Effect.ignore)
  })
