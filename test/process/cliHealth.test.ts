/**
 * The operator's destination health commands as typed in a terminal — `sluice destinations
 * pause|resume|disable|enable|update|health|stats` — each run as its own process against one
 * running `sluice start`: what they print, and that the broker did what they said (the admin
 * API shows the new state, a paused destination holds its events until it is resumed).
 */
import { expect, layer } from "@effect/vitest"
import type { Sluice } from "@sluice/sdk"
import { Context, Effect, Layer } from "effect"
import { randomBytes } from "node:crypto"
import { producer } from "../helpers/broker.js"
import type { BrokerProcess } from "../helpers/brokerProcess.js"
import { runSluice, startBrokerProcess } from "../helpers/brokerProcess.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

const ADMIN_TOKEN = randomBytes(24).toString("hex")

/** The file's broker process and a producer on its NATS. */
class Fixture extends Context.Tag("@sluice/test/cliHealth/Fixture")<
  Fixture,
  { readonly broker: BrokerProcess; readonly sluice: Sluice.Sluice["Type"] }
>() {}

const fixture = Layer.scoped(
  Fixture,
  Effect.gen(function* () {
    const nats = yield* NatsFixture
    const databaseUrl = yield* throwawayDatabase
    const broker = yield* startBrokerProcess({ natsUrl: nats.url, databaseUrl, env: { SLUICE_ADMIN_TOKEN: ADMIN_TOKEN } })
    return { broker, sluice: yield* producer(nats.url) }
  })
).pipe(Layer.provideMerge(NatsFixture.layer))

/** `sluice destinations <args>` against the file's broker, with its admin URL and token on the command line. */
const destinations = (...args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { broker } = yield* Fixture
    return yield* runSluice(["destinations", ...args, "--admin-url", broker.adminUrl, "--admin-token", ADMIN_TOKEN])
  })

/** `sluice destinations <args>`, which must succeed: its standard output. */
const succeeds = (...args: ReadonlyArray<string>) =>
  destinations(...args).pipe(
    Effect.map((run) => {
      expect({ code: run.code, stderr: run.stderr }, `sluice destinations ${args.join(" ")}`).toEqual({ code: 0, stderr: "" })
      return run.stdout
    })
  )

/** A destination delivering to a fresh receiver; it subscribes to `<id>.*` unless told otherwise. */
const destinationWithReceiver = (id: string, subscription = `${id}.*`) =>
  Effect.gen(function* () {
    const { broker } = yield* Fixture
    const receiver = yield* scopedReceiver()
    yield* broker.client.destinations.create({ payload: { id, url: `${receiver.url}/${id}`, subscriptions: [subscription] } })
    return receiver
  })

const healthOf = (id: string) =>
  Effect.flatMap(Fixture, ({ broker }) => broker.client.destinations.get({ path: { id } })).pipe(Effect.map((d) => d.health))

/** Per test: each CLI command is a Node process that takes seconds to start on a busy machine. */
const TEST_TIMEOUT_MS = 120_000

const TIMESTAMP = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z`

layer(fixture, { timeout: "120 seconds", excludeTestServices: true })("sluice destinations (health commands)", (it) => {
  it.scoped("pause holds the events in JetStream and resume delivers them; health and stats show what happened", () =>
    Effect.gen(function* () {
      const { broker, sluice } = yield* Fixture
      const receiver = yield* destinationWithReceiver("cli-paused")
      const first = yield* sluice.publish({ type: "cli-paused.created", data: { n: 1 } })
      yield* Effect.promise(() => receiver.waitForCount(1))

      const paused = yield* succeeds("pause", "cli-paused")
      expect(paused).toMatch(new RegExp(`^destination cli-paused: paused since ${TIMESTAMP} \\(paused by admin\\)\\n$`))
      expect(yield* healthOf("cli-paused")).toMatchObject({ state: "paused", reason: "paused by admin" })

      // Published and deliverable (a witness on the same events gets it), waiting in the destination's
      // consumer or held by its actor, and not sent.
      const witness = yield* destinationWithReceiver("cli-witness", "cli-paused.*")
      const second = yield* sluice.publish({ type: "cli-paused.created", data: { n: 2 } })
      yield* Effect.promise(() => witness.waitForCount(1))
      const stats = broker.client.destinations.stats({ path: { id: "cli-paused" } })
      yield* waitForEffect(stats.pipe(Effect.map((s) => s.backlog.pending + s.backlog.held === 1)), {
        description: "the event published during the pause in the destination's backlog"
      })
      expect(receiver.received()).toHaveLength(1)

      const resumed = yield* succeeds("resume", "cli-paused")
      expect(resumed).toMatch(new RegExp(`^destination cli-paused: active since ${TIMESTAMP} \\(resumed by admin\\)\\n$`))
      expect((yield* healthOf("cli-paused")).state).toBe("active")
      const received = yield* Effect.promise(() => receiver.waitForCount(2))
      expect(received.map((r) => r.headers["webhook-id"])).toEqual([first.id, second.id])

      // Both transitions and both deliveries recorded before the commands that show them run.
      yield* waitForEffect(
        broker.client.destinations.health({ path: { id: "cli-paused" } }).pipe(Effect.map((t) => t.length === 2)),
        { description: "pause and resume in the health timeline" }
      )
      yield* waitForEffect(stats.pipe(Effect.map((s) => s.states.completed === 2 && s.backlog.pending === 0)), {
        description: "two deliveries completed in the history"
      })

      const health = (yield* succeeds("health", "cli-paused")).trimEnd().split("\n")
      expect(health).toHaveLength(3)
      expect(health[0]).toMatch(/^AT +CHANGE +REASON$/)
      // Newest first.
      expect(health[1]).toMatch(new RegExp(`^${TIMESTAMP} +paused → active +resumed by admin$`))
      expect(health[2]).toMatch(new RegExp(`^${TIMESTAMP} +active → paused +paused by admin$`))

      const summary = yield* succeeds("stats", "cli-paused")
      expect(summary).toContain("destination cli-paused\n")
      expect(summary).toContain("backlog: 0 waiting in JetStream, 0 held by the actor\n")
      expect(summary).toContain("deliveries: completed 2\n")
      expect(summary).toMatch(/^latency 5m: p50 \d+ ms, p99 \d+ ms \(2 attempts\)$/m)
      expect(summary).toContain("last 60 minutes: 2 attempts succeeded, 0 did not\n")
    }),
    TEST_TIMEOUT_MS
  )

  it.scoped("disable records the operator's reason and new events as disabled; enable delivers again", () =>
    Effect.gen(function* () {
      const { broker, sluice } = yield* Fixture
      const receiver = yield* destinationWithReceiver("cli-disabled")

      const disabled = yield* succeeds("disable", "cli-disabled", "--reason", "partner maintenance")
      expect(disabled).toMatch(
        new RegExp(`^destination cli-disabled: disabled since ${TIMESTAMP} \\(disabled by admin: partner maintenance\\)\\n$`)
      )
      expect(yield* healthOf("cli-disabled")).toMatchObject({ state: "disabled", reason: "disabled by admin: partner maintenance" })

      const whileDisabled = yield* sluice.publish({ type: "cli-disabled.changed", data: { n: 1 } })
      const recorded = yield* waitForEffect(
        broker.client.events.get({ path: { id: whileDisabled.id } }).pipe(
          // Owed deliveries read `queued` until the actor records what became of them.
          Effect.map((detail) => detail.deliveries.find((d) => d.destinationId === "cli-disabled" && d.state !== "queued")?.state)
        ),
        { description: "the delivery of the event published while disabled recorded" }
      )
      expect(recorded).toBe("disabled")

      const enabled = yield* succeeds("enable", "cli-disabled")
      expect(enabled).toMatch(new RegExp(`^destination cli-disabled: active since ${TIMESTAMP} \\(enabled by admin\\)\\n$`))
      expect((yield* healthOf("cli-disabled")).state).toBe("active")
      const afterwards = yield* sluice.publish({ type: "cli-disabled.changed", data: { n: 2 } })
      const received = yield* Effect.promise(() => receiver.waitForCount(2))
      // The disabled event waits for an explicit replay: the new one arrives, and a
      // sluice.sync_error telling the receiver of the one it lost.
      const types = received.map((r) => (r.json as { type: string }).type)
      expect(types.toSorted()).toEqual(["cli-disabled.changed", "sluice.sync_error"])
      expect(received.find((r) => (r.json as { type: string }).type === "cli-disabled.changed")!.headers["webhook-id"]).toBe(
        afterwards.id
      )
      expect(received.find((r) => (r.json as { type: string }).type === "sluice.sync_error")!.json).toMatchObject({
        data: { destinationId: "cli-disabled", disabled: 1 }
      })
    }),
    TEST_TIMEOUT_MS
  )

  it.scoped("update changes the rate limit and concurrency of a running destination; health of an untouched one says so", () =>
    Effect.gen(function* () {
      const { broker } = yield* Fixture
      yield* destinationWithReceiver("cli-rated")

      const updated = yield* succeeds("update", "cli-rated", "--rate", "2.5", "--burst", "3", "--concurrency", "4")
      expect(updated).toBe("destination cli-rated updated: rate 2.5/s burst 3, concurrency 4\n")
      const stored = yield* broker.client.destinations.get({ path: { id: "cli-rated" } })
      expect(stored).toMatchObject({ rateLimit: { perSecond: 2.5, burst: 3 }, maxConcurrency: 4 })
      expect(stored.health.state).toBe("active")

      // --burst alone keeps the rate; contradicting flags are refused and change nothing.
      const burst = yield* succeeds("update", "cli-rated", "--burst", "6")
      expect(burst).toBe("destination cli-rated updated: rate 2.5/s burst 6, concurrency 4\n")
      const contradicting = yield* destinations("update", "cli-rated", "--unlimited", "--rate", "3")
      expect(contradicting).toMatchObject({ code: 1, stdout: "" })
      expect(contradicting.stderr).toContain("--unlimited")
      expect(yield* broker.client.destinations.get({ path: { id: "cli-rated" } })).toMatchObject({
        rateLimit: { perSecond: 2.5, burst: 6 },
        maxConcurrency: 4
      })

      const health = yield* succeeds("health", "cli-rated")
      expect(health).toBe("destination cli-rated has been active since it was added\n")
    }),
    TEST_TIMEOUT_MS
  )

  it.scoped("a command on a destination that does not exist fails with a message naming it", () =>
    Effect.gen(function* () {
      const run = yield* destinations("pause", "cli-nowhere")
      expect(run.code).toBe(1)
      expect(run.stdout).toBe("")
      expect(run.stderr).toBe("sluice: destination cli-nowhere does not exist\n")
    }),
    TEST_TIMEOUT_MS
  )
})
