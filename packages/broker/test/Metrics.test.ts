import { describe, expect, it } from "@effect/vitest"
import type { States } from "@sluice/protocol"
import { Option } from "effect"
import { Registry } from "prom-client"
import * as Fact from "../src/Fact.js"
import * as Metrics from "../src/Metrics.js"
import * as Probes from "../src/Probes.js"

const AT = "2025-01-01T00:00:00.000Z"

const attempt = (destinationId: string, n: number, fields: Pick<Fact.AttemptFinished, "outcome" | "state" | "durationMs">) =>
  new Fact.AttemptFinished({
    id: `a-${destinationId}-${n}`,
    eventId: `e-${n}`,
    destinationId,
    attempt: n,
    startedAt: AT,
    statusCode: null,
    error: null,
    responseExcerpt: null,
    nextAttemptAt: null,
    ...fields
  })

const changed = (destinationId: string, state: States.DeliveryState) =>
  new Fact.DeliveryChanged({
    id: `c-${destinationId}-${state}`,
    eventId: "e-9",
    destinationId,
    state,
    at: AT,
    reason: null,
    canceledBy: null,
    duplicateOf: null,
    ignoredReason: null
  })

interface Sample {
  readonly value: number
  readonly labels: Partial<Record<string, string | number>>
  readonly metricName?: string
}

/** A metric's value with (at least) these labels; for a histogram, of its series `series` (`_count`, `_bucket`, …). */
const valueOf = async (
  metric: { readonly get: () => Promise<{ readonly name: string; readonly values: ReadonlyArray<Sample> }> },
  labels: Record<string, string | number>,
  series = ""
) => {
  const { name, values } = await metric.get()
  return values.find(
    (v) =>
      (v.metricName ?? name) === name + series &&
      Object.entries(labels).every(([k, value]) => String(v.labels[k]) === String(value))
  )?.value
}

describe("Metrics", () => {
  it("counts attempts by outcome, retries, final states and durations", async () => {
    const metrics = Metrics.instruments(new Registry())
    const facts: ReadonlyArray<Fact.Fact> = [
      attempt("hooks", 1, { outcome: "failure", state: "errored", durationMs: 30 }),
      attempt("hooks", 2, { outcome: "throttled", state: "errored", durationMs: 5 }),
      attempt("hooks", 3, { outcome: "success", state: "completed", durationMs: 2_000 }),
      attempt("hooks", 4, { outcome: "rejected", state: "dead", durationMs: 10 }),
      attempt("other", 1, { outcome: "success", state: "completed", durationMs: 1 }),
      changed("hooks", "canceled"),
      changed("hooks", "duplicate"),
      // Not final: a replay queues the delivery again.
      changed("hooks", "queued"),
      new Fact.HealthChanged({ id: "h", destinationId: "hooks", from: "active", to: "down", reason: "x", at: AT })
    ]
    for (const fact of facts) Metrics.observe(metrics, fact)

    expect(await valueOf(metrics.deliveries, { destination: "hooks", outcome: "failure" })).toBe(1)
    expect(await valueOf(metrics.deliveries, { destination: "hooks", outcome: "throttled" })).toBe(1)
    expect(await valueOf(metrics.deliveries, { destination: "hooks", outcome: "success" })).toBe(1)
    expect(await valueOf(metrics.deliveries, { destination: "other", outcome: "success" })).toBe(1)
    expect(await valueOf(metrics.retries, { destination: "hooks" })).toBe(2)
    expect(await valueOf(metrics.retries, { destination: "other" })).toBeUndefined()
    for (const state of ["completed", "dead", "canceled", "duplicate"]) {
      expect(await valueOf(metrics.final, { destination: "hooks", state })).toBe(1)
    }
    expect(await valueOf(metrics.final, { destination: "hooks", state: "queued" })).toBeUndefined()
    expect(await valueOf(metrics.duration, { destination: "hooks" }, "_count")).toBe(4)
    expect(await valueOf(metrics.duration, { destination: "hooks" }, "_sum")).toBeCloseTo(2.045)
    expect(await valueOf(metrics.duration, { destination: "hooks", le: "0.025" }, "_bucket")).toBe(2)
    expect(await valueOf(metrics.duration, { destination: "hooks", le: "2.5" }, "_bucket")).toBe(4)
  })

  it("shows the destinations as they are now, forgetting removed ones", async () => {
    const metrics = Metrics.instruments(new Registry())
    Metrics.showDestinations(metrics, [
      { id: "a", state: "paused", backlog: Option.some(7) },
      { id: "b", state: "active", backlog: Option.none() }
    ])
    expect(await valueOf(metrics.backlog, { destination: "a" })).toBe(7)
    expect(await valueOf(metrics.backlog, { destination: "b" })).toBeUndefined()
    expect(await valueOf(metrics.health, { destination: "a", state: "paused" })).toBe(1)
    expect(await valueOf(metrics.health, { destination: "a", state: "active" })).toBe(0)
    expect(await valueOf(metrics.health, { destination: "b", state: "active" })).toBe(1)

    Metrics.showDestinations(metrics, [{ id: "b", state: "down", backlog: Option.some(0) }])
    expect(await valueOf(metrics.backlog, { destination: "a" })).toBeUndefined()
    expect(await valueOf(metrics.health, { destination: "a", state: "paused" })).toBeUndefined()
    expect(await valueOf(metrics.health, { destination: "b", state: "down" })).toBe(1)
    expect(await valueOf(metrics.health, { destination: "b", state: "active" })).toBe(0)
  })
})

describe("Probes.readiness", () => {
  it("is ready only when every dependency is ok, and names the ones that are not", () => {
    expect(Probes.readiness({ nats: "ok", history: "ok" })).toEqual({
      status: 200,
      body: { status: "ok", nats: "ok", history: "ok" }
    })
    expect(Probes.readiness({ nats: "ok", history: "down: connection refused" })).toEqual({
      status: 503,
      body: { status: "unavailable", nats: "ok", history: "down: connection refused" }
    })
  })
})
