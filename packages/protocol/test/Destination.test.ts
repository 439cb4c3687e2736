import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import {
  CreateDestination,
  defaultSettings,
  Destination,
  DestinationSettings,
  makeDestination,
  secretHint,
  toView,
  UpdateDestination,
  updateDestination
} from "../src/Destination.js"
import { describeParseError } from "../src/Envelope.js"

/** Decodes a request body the way the admin API does: unknown fields are refused. */
const decoder = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "error" })
  return {
    ok: (input: unknown): A => {
      const result = decode(input)
      if (Either.isLeft(result)) throw new Error(`expected the input to be accepted: ${describeParseError(result.left).message}`)
      return result.right
    },
    refused: (input: unknown): { field: string; message: string } => {
      const result = decode(input)
      if (Either.isRight(result)) throw new Error("expected the input to be refused")
      return describeParseError(result.left)
    }
  }
}

const create = decoder(CreateDestination)
const update = decoder(UpdateDestination)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
const generated = { id: "01jdq3m9v6r4k2n8p0s5t7w9xy", secret, now: "2026-11-23T09:00:00.000Z" }

describe("defaultSettings", () => {
  it("are valid settings", () => {
    expect(Schema.is(DestinationSettings)(defaultSettings)).toBe(true)
  })

  it("deliver in key order, with retries and health checks, without rate limit or batching", () => {
    expect(defaultSettings.ordering).toBe("key")
    expect(defaultSettings.rateLimit).toBeNull()
    expect(defaultSettings.batch).toBeNull()
    expect(defaultSettings.latestOnly).toBe(false)
    expect(defaultSettings.retry.maxAttempts).toBeGreaterThan(1)
    expect(defaultSettings.retry.initialMs).toBeLessThanOrEqual(defaultSettings.retry.maxMs)
    expect(defaultSettings.health.probeInitialMs).toBeLessThanOrEqual(defaultSettings.health.probeMaxMs)
    expect(defaultSettings.timeoutMs).toBeLessThan(defaultSettings.retry.maxAgeMs)
  })
})

describe("makeDestination", () => {
  it("gives every setting its default and uses the generated id, secret and time", () => {
    const destination = makeDestination(create.ok({ url: "https://example.test/hooks", subscriptions: ["order.*"] }), generated)
    expect(destination).toEqual({
      id: generated.id,
      name: generated.id,
      url: "https://example.test/hooks",
      subscriptions: ["order.*"],
      secret,
      ...defaultSettings,
      createdAt: generated.now,
      updatedAt: generated.now
    })
    expect(Schema.is(Destination)(destination)).toBe(true)
  })

  it("keeps what the request gives, merging partial policies into the defaults", () => {
    const otherSecret = "whsec_" + "A".repeat(32)
    const destination = makeDestination(
      create.ok({
        id: "orders",
        url: "http://127.0.0.1:8080/in",
        subscriptions: ["order.*", "user.>"],
        secret: otherSecret,
        ordering: "none",
        maxConcurrency: 50,
        rateLimit: { perSecond: 2.5, burst: 5 },
        retry: { maxAttempts: 3 },
        health: { failureThreshold: 1 },
        batch: { maxEvents: 100, maxWaitMs: 250 }
      }),
      generated
    )
    expect(destination.id).toBe("orders")
    expect(destination.name).toBe("orders")
    expect(destination.secret).toBe(otherSecret)
    expect(destination.ordering).toBe("none")
    expect(destination.maxConcurrency).toBe(50)
    expect(destination.rateLimit).toEqual({ perSecond: 2.5, burst: 5 })
    expect(destination.retry).toEqual({ ...defaultSettings.retry, maxAttempts: 3 })
    expect(destination.health).toEqual({ ...defaultSettings.health, failureThreshold: 1 })
    expect(destination.batch).toEqual({ maxEvents: 100, maxWaitMs: 250 })
    expect(destination.timeoutMs).toBe(defaultSettings.timeoutMs)
    expect(Schema.is(Destination)(destination)).toBe(true)
  })

  it("names the destination when a name is given", () => {
    const destination = makeDestination(
      create.ok({ id: "orders", name: "Order service", url: "https://example.test", subscriptions: [">"] }),
      generated
    )
    expect(destination.name).toBe("Order service")
  })
})

describe("CreateDestination", () => {
  const body = { url: "https://example.test/hooks", subscriptions: ["order.*"] }

  it("refuses a url that is not an absolute http(s) url without credentials", () => {
    for (const url of ["example.test/hooks", "/hooks", "ftp://example.test", "mailto:a@example.test", "https://user:pw@example.test", ""]) {
      const error = create.refused({ ...body, url })
      expect(error.field).toBe("url")
      expect(error.message).toBe("url: must be an absolute http(s) URL without credentials")
    }
    expect(create.refused({ subscriptions: ["a"] }).field).toBe("url")
  })

  it("refuses missing or empty subscriptions", () => {
    expect(create.refused({ url: body.url }).field).toBe("subscriptions")
    const error = create.refused({ ...body, subscriptions: [] })
    expect(error.field).toBe("subscriptions.0")
    expect(error.message).toBe("subscriptions.0: is missing")
  })

  it("refuses malformed patterns, naming the index", () => {
    for (const pattern of ["", "order.>.created", "order>", "or*der", "order..created", "order created", ".order", "order."]) {
      const error = create.refused({ ...body, subscriptions: ["user.*", pattern] })
      expect(error.field).toBe("subscriptions.1")
      expect(error.message).toMatch(/^subscriptions\.1: must be dot-separated tokens, '\*' for one token or a final '>'/)
    }
  })

  it("accepts wildcard patterns", () => {
    for (const pattern of [">", "*", "order.*", "order.>", "*.created", "order.*.v2", "*.>"]) {
      expect(create.ok({ ...body, subscriptions: [pattern] }).subscriptions).toEqual([pattern])
    }
  })

  it("refuses an id that cannot name a consumer, and a malformed secret", () => {
    for (const id of ["Orders", "orders.v2", "-orders", "a".repeat(64), "orders webhook"]) {
      const error = create.refused({ ...body, id })
      expect(error.field).toBe("id")
      expect(error.message).toMatch(/^id: must be 1-63 characters of lowercase letters/)
    }
    expect(create.refused({ ...body, secret: "hunter2" })).toEqual({
      field: "secret",
      message: "secret: must be 'whsec_' followed by at least 16 base64-encoded bytes"
    })
  })

  it("refuses settings out of range and unknown fields", () => {
    expect(create.refused({ ...body, maxConcurrency: 0 }).field).toBe("maxConcurrency")
    expect(create.refused({ ...body, ordering: "fifo" }).field).toBe("ordering")
    expect(create.refused({ ...body, retry: { factor: 0.5 } }).field).toBe("retry.factor")
    expect(create.refused({ ...body, rateLimit: { perSecond: 0, burst: 1 } }).field).toBe("rateLimit.perSecond")
    expect(create.refused({ ...body, batch: { maxEvents: 10 } }).field).toBe("batch.maxWaitMs")
    expect(create.refused({ ...body, retries: 3 }).field).toBe("retries")
  })
})

describe("updateDestination", () => {
  const stored = makeDestination(
    create.ok({ id: "orders", url: "https://example.test/hooks", subscriptions: ["order.*"], rateLimit: { perSecond: 5, burst: 10 } }),
    generated
  )
  const later = "2026-11-24T10:00:00.000Z"

  it("changes only the given fields and the update time", () => {
    const updated = updateDestination(stored, update.ok({ url: "https://example.test/v2", maxConcurrency: 3 }), later)
    expect(updated).toEqual({ ...stored, url: "https://example.test/v2", maxConcurrency: 3, updatedAt: later })
    expect(updated.createdAt).toBe(generated.now)
  })

  it("keeps everything but the update time for an empty patch", () => {
    expect(updateDestination(stored, update.ok({}), later)).toEqual({ ...stored, updatedAt: later })
  })

  it("merges nested policies and clears nullable ones only on an explicit null", () => {
    const updated = updateDestination(stored, update.ok({ retry: { maxAttempts: 2 }, health: { successThreshold: 1 } }), later)
    expect(updated.retry).toEqual({ ...stored.retry, maxAttempts: 2 })
    expect(updated.health).toEqual({ ...stored.health, successThreshold: 1 })
    expect(updated.rateLimit).toEqual({ perSecond: 5, burst: 10 })
    expect(updateDestination(stored, update.ok({ rateLimit: null }), later).rateLimit).toBeNull()
  })

  it("replaces the subscriptions as a whole", () => {
    expect(updateDestination(stored, update.ok({ subscriptions: ["user.>"] }), later).subscriptions).toEqual(["user.>"])
  })

  it("refuses a bad url, empty subscriptions, bad patterns and fields that cannot change", () => {
    expect(update.refused({ url: "not a url" }).field).toBe("url")
    expect(update.refused({ subscriptions: [] }).field).toBe("subscriptions.0")
    expect(update.refused({ subscriptions: ["order.>.x"] }).field).toBe("subscriptions.0")
    expect(update.refused({ id: "renamed" }).field).toBe("id")
    expect(update.refused({ secret }).field).toBe("secret")
  })
})

describe("toView", () => {
  it("shows a hint of the secret, never the secret", () => {
    const destination = makeDestination(create.ok({ url: "https://example.test", subscriptions: [">"] }), generated)
    const health = { state: "active" as const, since: generated.now, reason: "created" }
    const view = toView(destination, health)
    expect(view).not.toHaveProperty("secret")
    expect(view.secretHint).toBe(secretHint(secret))
    expect(secret.startsWith(view.secretHint.slice(0, -1))).toBe(true)
    expect(view.secretHint.length).toBeLessThan(secret.length)
    expect(JSON.stringify(view)).not.toContain(secret)
    expect(view.health).toEqual(health)
  })
})
