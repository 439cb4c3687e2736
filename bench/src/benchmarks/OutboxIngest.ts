/**
 * Benchmark 5, outbox and ingest: the two ways into Sluice besides the SDK's publish, on one
 * fresh stack without destinations (the history writer is the only consumer). The history
 * writer is waited for between phases, so no phase pays for the previous one's events.
 * - HTTP ingest: ~1 KiB events POSTed to `/api/v1/events` with the producer token over
 *   keep-alive connections, one event per request from a fixed number of clients, then in
 *   batches; accepted events/s = events answered 2xx / (last answer − first request), with
 *   request latency p50/p99, and SLUICE_EVENTS must hold every accepted event.
 * - Outbox: events enqueued into `sluice_outbox` of a throwaway producer database in
 *   transactions (the enqueue rate), then a relay started: events/s from its start until
 *   SLUICE_EVENTS holds all of them. Then again with the relay already running while the
 *   events are enqueued: events/s from the first enqueue until the last one is in the stream.
 */
import { Auth } from "@sluice/broker"
import { Subjects } from "@sluice/protocol"
import { createOutbox, OutboxRelay } from "@sluice/sdk"
import type { Outbox } from "@sluice/sdk"
import { drizzle } from "drizzle-orm/postgres-js"
import { Array as Arr, Console, Effect, Layer } from "effect"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import postgres from "postgres"
import type { Agent } from "undici"
import { query } from "../../../test/helpers/inspect.js"
import { throwawayDatabase } from "../../../test/helpers/postgres.js"
import { waitForEffect } from "../../../test/helpers/waitFor.js"
import type { HistoryBackend } from "../Infra.js"
import * as Infra from "../Infra.js"
import { makeAgent, post } from "../Post.js"
import * as Report from "../Report.js"
import { quantileOfSorted } from "../Stats.js"
import * as SluiceStack from "../SluiceStack.js"
import type { BenchEvent } from "../Workload.js"
import * as Workload from "../Workload.js"

export interface OutboxIngestOptions {
  /** Events per phase. */
  readonly events: number
  /** Keys the events are spread over round-robin (the relay publishes each key's rows in order). */
  readonly keys: number
  /** Requests in flight when posting one event per request. */
  readonly clients: number
  /** Events per ingest request in the batch phase, and per outbox transaction. */
  readonly batchSize: number
  /** Requests in flight in the batch phase. */
  readonly batchClients: number
  /** Outbox transactions in flight while enqueuing. */
  readonly transactions: number
  readonly history: HistoryBackend
}

export const options = (quick: boolean, history: HistoryBackend): OutboxIngestOptions => ({
  events: quick ? 2_000 : 20_000,
  keys: 100,
  clients: 16,
  batchSize: 100,
  batchClients: 4,
  transactions: 4,
  history
})

const PREFIX = "ingest"

export interface IngestResult {
  readonly events: number
  readonly eventsPerRequest: number
  readonly clients: number
  readonly requests: number
  /** Events whose request was answered 2xx. */
  readonly accepted: number
  /** Events whose request was answered otherwise, or not at all. */
  readonly failed: number
  /** Answers by status code ("none": the request failed without one). */
  readonly statuses: Readonly<Record<string, number>>
  /** What SLUICE_EVENTS gained during the phase: `accepted` when nothing was lost or stored twice. */
  readonly stored: number
  /** From the first request to the last answer. */
  readonly seconds: number
  readonly acceptedPerSecond: number
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number }
}

export interface OutboxResult {
  readonly enqueue: Enqueued
  readonly relay: Relayed
  readonly concurrent: {
    readonly enqueue: Enqueued
    /** From the first enqueue until the last event was in the stream. */
    readonly relay: Relayed
  }
}

/** Committed to the outbox. */
interface Enqueued {
  readonly events: number
  readonly seconds: number
  readonly eventsPerSecond: number
}

interface Relayed {
  /** Events in the stream by the end (all of them unless the deadline passed first). */
  readonly published: number
  readonly complete: boolean
  /** Rows still unsent in the outbox at the end (0 unless the deadline passed). */
  readonly unsent: number
  readonly seconds: number
  readonly eventsPerSecond: number
}

/** `count` events over `keys` keys, numbered within each key. */
const keyedEvents = (count: number, keys: number): ReadonlyArray<BenchEvent> =>
  Array.from({ length: count }, (_, i) => ({ destination: 0, key: `k${i % keys}`, seq: Math.floor(i / keys) }))

/** Messages in SLUICE_EVENTS right now. */
const storedEvents = (stack: SluiceStack.SluiceStack) =>
  Effect.promise(() => stack.jsm.streams.info(Subjects.EVENTS_STREAM)).pipe(Effect.map((info) => info.state.messages))

/** How a wait for events in the stream ended. */
interface Stored {
  readonly complete: boolean
  readonly endedAt: number
  readonly published: number
}

/**
 * Polls until SLUICE_EVENTS holds `count` more messages than `before` (every 20 ms, so that is
 * how precise the end is), or the deadline for that many events passed.
 */
const awaitStored = (stack: SluiceStack.SluiceStack, before: number, count: number): Effect.Effect<Stored> =>
  Effect.gen(function* () {
    const complete = yield* waitForEffect(
      Effect.map(storedEvents(stack), (n) => n - before >= count),
      { timeoutMs: Workload.deadlineMs(count), description: `${count} events in ${Subjects.EVENTS_STREAM}` }
    ).pipe(Effect.as(true), Effect.catchTag("WaitTimedOut", () => Effect.succeed(false)))
    return { complete, endedAt: Workload.now(), published: (yield* storedEvents(stack)) - before }
  })

/** A keep-alive pool for the ingest clients, closed with the scope. */
const agent = (connections: number) =>
  Effect.acquireRelease(Effect.sync(() => makeAgent(connections)), (pool) => Effect.promise(() => pool.close()))

interface Answer {
  readonly status: number | "none"
  readonly ms: number
}

/** One ingest request: its status (or "none" when it got no answer) and how long it took. */
const ingest = (pool: Agent, url: string, token: string, body: string) =>
  Effect.promise(async (): Promise<Answer> => {
    const startedAt = Workload.now()
    const status = await post(pool, url, body, { authorization: `Bearer ${token}` }).catch(() => "none" as const)
    return { status, ms: Workload.now() - startedAt }
  })

const ingestPhase = (
  stack: SluiceStack.SluiceStack,
  token: string,
  events: ReadonlyArray<BenchEvent>,
  eventsPerRequest: number,
  clients: number
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const pool = yield* agent(clients)
      const url = `${stack.broker.adminUrl}/api/v1/events`
      const body = (chunk: ReadonlyArray<BenchEvent>) => {
        const inputs = chunk.map((event) => SluiceStack.publishInput(PREFIX, event))
        return JSON.stringify(eventsPerRequest === 1 ? inputs[0] : { events: inputs })
      }
      const chunks = Arr.chunksOf(events, eventsPerRequest)
      const before = yield* storedEvents(stack)
      const startedAt = Workload.now()
      const answers = yield* Effect.forEach(chunks, (chunk) => ingest(pool, url, token, body(chunk)), {
        concurrency: clients
      })
      const seconds = (Workload.now() - startedAt) / 1000
      const stored = (yield* storedEvents(stack)) - before
      const statuses: Record<string, number> = {}
      let accepted = 0
      answers.forEach((answer, i) => {
        statuses[answer.status] = (statuses[answer.status] ?? 0) + 1
        if (answer.status !== "none" && answer.status >= 200 && answer.status < 300) accepted += chunks[i]!.length
      })
      const latencies = answers.map((answer) => answer.ms).sort((a, b) => a - b)
      return {
        events: events.length,
        eventsPerRequest,
        clients,
        requests: chunks.length,
        accepted,
        failed: events.length - accepted,
        statuses,
        stored,
        seconds,
        acceptedPerSecond: accepted / seconds,
        latencyMs: {
          p50: quantileOfSorted(latencies, 0.5),
          p99: quantileOfSorted(latencies, 0.99),
          max: latencies[latencies.length - 1] ?? Number.NaN
        }
      } satisfies IngestResult
    })
  )

/** A Drizzle database (postgres.js) on a throwaway producer database, with the outbox migrated. */
const producerDatabase = Effect.gen(function* () {
  const url = yield* throwawayDatabase
  const client = yield* Effect.acquireRelease(
    Effect.sync(() => postgres(url, { onnotice: () => {} })),
    (sql) => Effect.promise(() => sql.end())
  )
  const db = drizzle({ client })
  const outbox = createOutbox(db)
  yield* Effect.promise(() => outbox.migrate())
  return { url, db, outbox }
})

type Producer = Effect.Effect.Success<typeof producerDatabase>

/** Enqueues every event, `batchSize` per transaction and `transactions` transactions at once, as a producer's requests would. */
const enqueueAll = (producer: Producer, events: ReadonlyArray<BenchEvent>, options: OutboxIngestOptions) =>
  Effect.gen(function* () {
    const enqueueOne = (tx: Outbox.OutboxDatabase, event: BenchEvent) =>
      producer.outbox.enqueue(tx, SluiceStack.publishInput(PREFIX, event))
    const startedAt = Workload.now()
    yield* Effect.forEach(
      Arr.chunksOf(events, options.batchSize),
      (chunk) =>
        Effect.promise(() =>
          producer.db.transaction(async (tx) => {
            for (const event of chunk) await enqueueOne(tx, event)
          })
        ),
      { concurrency: options.transactions, discard: true }
    )
    const seconds = (Workload.now() - startedAt) / 1000
    const result: Enqueued = { events: events.length, seconds, eventsPerSecond: events.length / seconds }
    return { startedAt, result }
  })

/** A relay on the producer database and the stack's NATS, stopped when the scope closes. */
const relay = (producer: Producer, stack: SluiceStack.SluiceStack) =>
  Layer.build(OutboxRelay.layer({ databaseUrl: producer.url, servers: stack.nats.url, name: "sluice-bench-relay" }))

const unsentRows = (producer: Producer) =>
  query(producer.url, (sql) => sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM sluice_outbox WHERE sent_at IS NULL`).pipe(
    Effect.map((rows) => rows[0]!.n)
  )

/** What a relay phase achieved, timed from `startedAt`. */
const relayed = (producer: Producer, outcome: Stored, startedAt: number) =>
  Effect.map(unsentRows(producer), (unsent): Relayed => {
    const seconds = (outcome.endedAt - startedAt) / 1000
    const { complete, published } = outcome
    return { published, complete, unsent, seconds, eventsPerSecond: published / seconds }
  })

const outboxPhase = (stack: SluiceStack.SluiceStack, events: ReadonlyArray<BenchEvent>, options: OutboxIngestOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const producer = yield* producerDatabase

      const enqueued = yield* enqueueAll(producer, events, options)
      const before = yield* storedEvents(stack)
      const relayStartedAt = Workload.now()
      const afterEnqueue = yield* Effect.scoped(
        Effect.zipRight(relay(producer, stack), awaitStored(stack, before, events.length))
      ).pipe(Effect.flatMap((outcome) => relayed(producer, outcome, relayStartedAt)))
      yield* Infra.awaitHistory(stack.jsm)

      const concurrent = yield* Effect.scoped(
        Effect.gen(function* () {
          yield* relay(producer, stack)
          const before = yield* storedEvents(stack)
          const during = yield* enqueueAll(producer, events, options)
          const outcome = yield* awaitStored(stack, before, events.length)
          return { enqueue: during.result, relay: yield* relayed(producer, outcome, during.startedAt) }
        })
      )
      return { enqueue: enqueued.result, relay: afterEnqueue, concurrent } satisfies OutboxResult
    })
  )

export const run = (options: OutboxIngestOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const stack = yield* SluiceStack.start({ history: options.history })
      // Generated by the broker at start, as for a user who sets no SLUICE_PRODUCER_TOKEN.
      const tokenFile = join(stack.broker.dataDir, Auth.PRODUCER_TOKEN_FILE)
      const token = (yield* Effect.promise(() => readFile(tokenFile, "utf8"))).trim()
      const events = keyedEvents(options.events, options.keys)

      const single = yield* ingestPhase(stack, token, events, 1, options.clients)
      yield* Console.log(`  HTTP ingest, 1 event per request: ${Report.fmt(single.acceptedPerSecond)} events/s`)
      yield* Infra.awaitHistory(stack.jsm)
      const batched = yield* ingestPhase(stack, token, events, options.batchSize, options.batchClients)
      yield* Console.log(`  HTTP ingest, ${options.batchSize} per request: ${Report.fmt(batched.acceptedPerSecond)} events/s`)
      yield* Infra.awaitHistory(stack.jsm)
      const outbox = yield* outboxPhase(stack, events, options)
      yield* Console.log(
        `  outbox: enqueue ${Report.fmt(outbox.enqueue.eventsPerSecond)} events/s, ` +
          `relay ${Report.fmt(outbox.relay.eventsPerSecond)} events/s, ` +
          `both at once ${Report.fmt(outbox.concurrent.relay.eventsPerSecond)} events/s`
      )

      const rate = (seconds: number, perSecond: number) => [Report.fmt(seconds, 2), Report.fmt(perSecond)]
      const ingestRow = (label: string, r: IngestResult) => [
        label,
        Report.fmt(r.events),
        r.accepted === r.events ? Report.fmt(r.accepted) : `${Report.fmt(r.accepted)} — FAILURES`,
        r.stored === r.accepted ? Report.fmt(r.stored) : `${Report.fmt(r.stored)} — MISMATCH`,
        ...rate(r.seconds, r.acceptedPerSecond),
        Report.fmt(r.latencyMs.p50, 1),
        Report.fmt(r.latencyMs.p99, 1)
      ]
      const enqueueRow = (label: string, r: Enqueued) => [
        label,
        Report.fmt(r.events),
        Report.fmt(r.events),
        "–",
        ...rate(r.seconds, r.eventsPerSecond),
        "–",
        "–"
      ]
      const relayRow = (label: string, r: Relayed) => [
        label,
        Report.fmt(options.events),
        "–",
        r.complete && r.unsent === 0
          ? Report.fmt(r.published)
          : `${Report.fmt(r.published)} — INCOMPLETE, ${Report.fmt(r.unsent)} unsent`,
        ...rate(r.seconds, r.eventsPerSecond),
        "–",
        "–"
      ]
      yield* Report.printTable(
        `Outbox and ingest: ${Report.fmt(options.events)} events × ~1 KiB over ${options.keys} keys per phase, ` +
          `history in ${options.history}, no destinations`,
        ["path", "events", "accepted", "in the stream", "seconds", "events/s", "p50 ms", "p99 ms"],
        [
          ingestRow(`HTTP ingest, 1 event/request, ${options.clients} clients`, single),
          ingestRow(`HTTP ingest, ${options.batchSize} events/request, ${options.batchClients} clients`, batched),
          enqueueRow(`outbox enqueue, ${options.batchSize} events/transaction, ${options.transactions} at once`, outbox.enqueue),
          relayRow("outbox relay, started on the enqueued backlog", outbox.relay),
          enqueueRow("outbox enqueue, relay running", outbox.concurrent.enqueue),
          relayRow("outbox enqueue → stream, relay running", outbox.concurrent.relay)
        ]
      )
      for (const [phase, r] of [["one event per request", single], ["batches", batched]] as const) {
        if (r.failed > 0) {
          yield* Console.log(`FAILED (${phase}): ${Report.fmt(r.failed)} events not accepted; answers: ${JSON.stringify(r.statuses)}`)
        }
      }
      return { single, batched, outbox }
    })
  )
