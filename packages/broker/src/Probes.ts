/**
 * Liveness and readiness for orchestrators and load balancers, without a token (they say
 * nothing an operator's token protects):
 *
 * - `GET /healthz`: 200 `{"status":"ok"}` while the process serves HTTP; restart it when not.
 * - `GET /readyz`: 200 when NATS answers a ping and the history database a trivial query,
 *   503 otherwise, naming each dependency `ok` or `down: <why>`. Delivery goes on while the
 *   database is down (facts wait in JetStream), but the admin API cannot answer, so a load
 *   balancer should route operators elsewhere.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { sql } from "drizzle-orm"
import { Effect, Layer } from "effect"
import { Database } from "./Database.js"
import { describeCause } from "./HistoryError.js"
import { Nats } from "./Nats.js"

/** The longest a check may take; a dependency slower than this is not ready. */
const CHECK_TIMEOUT = "2 seconds"

/** What one dependency check says: `ok`, or why not. */
export type CheckResult = "ok" | `down: ${string}`

/** The readiness answer: ready only when every dependency is `ok`. */
export const readiness = <K extends string>(checks: Record<K, CheckResult>) => {
  const ready = Object.values<CheckResult>(checks).every((result) => result === "ok")
  return { status: ready ? 200 : 503, body: { status: ready ? "ok" : "unavailable", ...checks } } as const
}

const check = (run: () => Promise<unknown>): Effect.Effect<CheckResult> =>
  Effect.tryPromise({ try: run, catch: describeCause }).pipe(
    Effect.timeoutFail({ duration: CHECK_TIMEOUT, onTimeout: () => `no answer within ${CHECK_TIMEOUT}` }),
    Effect.match({ onFailure: (why) => `down: ${why}` as const, onSuccess: () => "ok" as const })
  )

export const layer: Layer.Layer<never, never, Nats | Database> = Layer.unwrapEffect(
  Effect.gen(function* () {
    const nats = yield* Nats
    const { db } = yield* Database
    const ready = Effect.all(
      {
        // A ping the server answers: closed or reconnecting connections do not.
        nats: check(() => nats.connection.flush()),
        history: check(() => db.execute(sql`select 1`))
      },
      { concurrency: "unbounded" }
    ).pipe(
      Effect.map(readiness),
      Effect.map(({ status, body }) => HttpServerResponse.unsafeJson(body, { status }))
    )
    return HttpApiBuilder.Router.use((router) =>
      Effect.all([
        router.get("/healthz", Effect.succeed(HttpServerResponse.unsafeJson({ status: "ok" }))),
        router.get("/readyz", ready)
      ])
    )
  })
)
