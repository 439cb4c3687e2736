/**
 * Producers that live for one event (DESIGN problem 3): 200 separate OS processes each connect
 * with the SDK, publish one event, close and exit on their own. Every process exits 0 having
 * printed its stored event, and every event is in the history once and reaches the receiver
 * exactly once.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as esbuild from "esbuild"
import { execFile } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { brokerOnFixture } from "../helpers/broker.js"
import { NatsFixture } from "../helpers/nats.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

const PRODUCERS = 200
/** Processes starting at once: enough to overlap connects and acks, few enough for a 2-core machine. */
const PARALLEL = 8

const fixture = fileURLToPath(new URL("fixtures/shortLivedProducer.ts", import.meta.url))


/**
 * The producer bundled into one plain-JavaScript file that `node` runs directly: under tsx every
 * process would spend seconds compiling the SDK before it connects. The bundle's CommonJS
 * dependencies get a `require` of their own.
 */
const bundledProducer = Effect.gen(function* () {
  const dir = yield* Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "sluice-producer-"))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )
  const outfile = join(dir, "producer.mjs")
  yield* Effect.promise(() =>
    esbuild.build({
      entryPoints: [fixture],
      outfile,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      logLevel: "warning",
      banner: { js: 'import { createRequire as createRequireForBundle } from "node:module"; const require = createRequireForBundle(import.meta.url);' }
    })
  )
  return outfile
})

interface ProducerRun {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** One producer process, to its end (killed after 60 s: a process that does not end on its own is a failure too). */
const runProducer = (script: string, natsUrl: string, n: number) =>
  Effect.async<ProducerRun>((resume) => {
    const child = execFile(process.execPath, [script, natsUrl, String(n)], { timeout: 60_000 }, (error, stdout, stderr) =>
      resume(Effect.succeed({ code: error === null ? 0 : (child.exitCode ?? null), stdout, stderr }))
    )
  })

interface Printed {
  readonly pid: number
  readonly id: string
  readonly seq: number
  readonly duplicate: boolean
}

layer(NatsFixture.layer, { excludeTestServices: true })("short-lived producers", (it) => {
  it.scoped(
    `${PRODUCERS} processes publishing one event each: every event stored, recorded and delivered exactly once`,
    () =>
      Effect.gen(function* () {
        const { client, natsUrl } = yield* brokerOnFixture
        const receiver = yield* scopedReceiver()
        yield* client.destinations.create({ payload: { id: "jobs", url: `${receiver.url}/jobs`, subscriptions: ["job.*"] } })
        const script = yield* bundledProducer

        const runs = yield* Effect.forEach(
          Array.from({ length: PRODUCERS }, (_, n) => n),
          (n) => runProducer(script, natsUrl, n),
          { concurrency: PARALLEL }
        )
        const failed = runs.filter((run) => run.code !== 0 || run.stderr !== "")
        expect(failed.slice(0, 3), `${failed.length} producers failed`).toEqual([])
        const printed = runs.map((run) => JSON.parse(run.stdout) as Printed)
        expect(new Set(printed.map((p) => p.pid)).size).toBe(PRODUCERS)
        expect(printed.filter((p) => p.duplicate)).toEqual([])
        const ids = new Set(printed.map((p) => p.id))
        expect(ids.size).toBe(PRODUCERS)
        expect(new Set(printed.map((p) => p.seq)).size).toBe(PRODUCERS)

        // The history holds each event once, delivered.
        const history = yield* waitForEffect(
          Effect.gen(function* () {
            const events: Array<{ readonly id: string; readonly states: ReadonlyArray<string> }> = []
            let cursor: string | undefined
            do {
              const page = yield* client.events.list({ urlParams: { type: "job.finished", limit: 500, cursor } })
              events.push(...page.items.map((e) => ({ id: e.id, states: e.deliveries.map((d) => `${d.destinationId}:${d.state}`) })))
              cursor = page.nextCursor ?? undefined
            } while (cursor !== undefined)
            return events.length >= PRODUCERS && events.every((e) => e.states.includes("jobs:completed")) && events
          }),
          { description: `${PRODUCERS} events in the history, each delivered`, timeoutMs: 30_000, intervalMs: 250 }
        )
        expect(history).toHaveLength(PRODUCERS)
        expect(new Set(history.map((e) => e.id))).toEqual(ids)
        expect(history.filter((e) => e.states.length !== 1)).toEqual([])

        // Every delivery completed means every request answered: the receiver saw each event once.
        const received = receiver.received().map((r) => r.headers["webhook-id"])
        expect(received).toHaveLength(PRODUCERS)
        expect(new Set(received)).toEqual(ids)
      }),
    // About a minute on two idle cores; three times that and more while the whole suite runs.
    360_000
  )
})
