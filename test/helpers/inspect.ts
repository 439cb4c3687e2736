/**
 * Looking under the broker in tests: JetStream through a connection of the test's own,
 * the history database through SQL.
 */
import type { JetStreamManager } from "@nats-io/jetstream"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { Subjects } from "@sluice/protocol"
import { Effect } from "effect"
import postgres from "postgres"

/** Runs `use` with a JetStream manager on a connection closed afterwards. */
export const withJsm = <A>(natsUrl: string, use: (jsm: JetStreamManager) => Promise<A>): Effect.Effect<A> =>
  Effect.acquireUseRelease(
    Effect.promise(() => connect({ servers: natsUrl })),
    (nc) => Effect.promise(async () => use(await jetstreamManager(nc))),
    (nc) => Effect.promise(() => nc.close())
  )

/** The JetStream view of a destination's consumer: what waits, what the actor holds. */
export const consumerInfo = (natsUrl: string, destinationId: string) =>
  withJsm(natsUrl, (jsm) => jsm.consumers.info(Subjects.EVENTS_STREAM, Subjects.destinationConsumer(destinationId)))

/** Runs `run` against the history database on a connection closed afterwards. */
export const query = <A>(databaseUrl: string, run: (sql: postgres.Sql) => Promise<A>): Effect.Effect<A> =>
  Effect.acquireUseRelease(
    Effect.sync(() => postgres(databaseUrl, { max: 1, onnotice: () => {} })),
    (sql) => Effect.promise(() => run(sql)),
    (sql) => Effect.promise(() => sql.end())
  )
