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

/**
 * Which broker process (by `SLUICE_PROCESS_NAME`) holds each destination's lease in force
 * now — held by a process whose membership has not run out; absent = none.
 */
export const leaseHolders = (natsUrl: string, destinationIds: ReadonlyArray<string>) =>
  withJsm(natsUrl, async (jsm) => {
    const last = async <A>(bucket: string, key: string): Promise<A | undefined> => {
      const msg = await jsm.streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${key}` }).catch(() => null)
      return msg === null || msg.data.length === 0 ? undefined : msg.json<A>()
    }
    const holders = new Map<string, string>()
    for (const id of destinationIds) {
      const lease = await last<{ owner: string; name: string }>("sluice_leases", id)
      if (lease === undefined) continue
      const member = await last<{ expiresAt: number }>("sluice_members", lease.owner)
      if (member !== undefined && member.expiresAt > Date.now()) holders.set(id, lease.name)
    }
    return holders
  })
