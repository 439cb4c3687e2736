/**
 * The Promise face of the SDK, for producers that do not use Effect: the same
 * implementation as the `Sluice` service, with failures thrown as the same tagged error
 * instances (`err._tag === "PublishTimeout"`, `err instanceof PublishTimeout`).
 */
import type { Effect } from "effect"
import { ManagedRuntime } from "effect"
import { settle } from "./internal/settle.js"
import * as Sluice from "./Sluice.js"
import type { PublishError, StatusError } from "./SluiceError.js"

/** A connected producer. Call `close()` when done: publishes still awaiting their ack finish first. */
export interface SluiceClient {
  /**
   * Resolves once JetStream stored the event; rejects with `InvalidEnvelope`,
   * `PublishTimeout`, `StreamNotFound` or `PublishFailed`.
   */
  readonly publish: (input: Sluice.PublishInput) => Promise<Sluice.PublishResult>
  /** Validates all inputs first (nothing sent if one is invalid), then publishes them pipelined, results in input order. */
  readonly publishMany: (inputs: ReadonlyArray<Sluice.PublishInput>) => Promise<ReadonlyArray<Sluice.PublishResult>>
  /**
   * What became of an event, from the broker (`adminUrl`, `producerToken`); rejects with
   * `AdminApiNotConfigured`, `EventNotFound` (not in the history yet: poll again) or
   * `StatusUnavailable`.
   */
  readonly status: (eventId: string) => Promise<Sluice.EventStatus>
  readonly close: () => Promise<void>
}

/** Connects to NATS; rejects with `ConnectionFailed` when the first connection cannot be made. */
export const connect = async (options: Sluice.ConnectOptions): Promise<SluiceClient> => {
  const runtime = ManagedRuntime.make(Sluice.layer(options))
  const sluice = await settle(runtime.runPromiseExit(Sluice.Sluice)).catch(async (error: unknown) => {
    await runtime.dispose()
    throw error
  })
  // A producer that forgets to await its last publish before close() still gets it stored.
  const inFlight = new Set<Promise<unknown>>()
  let closed = false
  const run = <A>(effect: Effect.Effect<A, PublishError | StatusError>): Promise<A> => {
    if (closed) return Promise.reject(new Error("this Sluice client is closed"))
    const result = settle(runtime.runPromiseExit(effect))
    inFlight.add(result)
    const forget = () => inFlight.delete(result)
    result.then(forget, forget)
    return result
  }
  return {
    publish: (input) => run(sluice.publish(input)),
    publishMany: (inputs) => run(sluice.publishMany(inputs)),
    status: (eventId) => run(sluice.status(eventId)),
    close: async () => {
      closed = true
      await Promise.allSettled(inFlight)
      await runtime.dispose()
    }
  }
}
