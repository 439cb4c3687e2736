import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createServer } from "node:net"
import { connect, ConnectionFailed, PublishTimeout, Sluice, StreamNotFound } from "../src/index.js"

/** A port nothing listens on: bound, then released. */
const closedPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })

describe("connect", () => {
  it("rejects with ConnectionFailed when no NATS server answers", async () => {
    const port = await closedPort()
    const error = await connect({ servers: `nats://127.0.0.1:${port}` }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConnectionFailed)
    expect((error as ConnectionFailed)._tag).toBe("ConnectionFailed")
    expect((error as ConnectionFailed).message).toContain(`127.0.0.1:${port}`)
  })

  it.effect("the Effect layer fails with ConnectionFailed too", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(closedPort)
      const error = yield* Sluice.Sluice.pipe(Effect.provide(Sluice.layer({ servers: `nats://127.0.0.1:${port}` })), Effect.flip)
      expect(error._tag).toBe("ConnectionFailed")
    })
  )
})

describe("errors", () => {
  it("say what to do", () => {
    expect(new StreamNotFound({ stream: "SLUICE_EVENTS" }).message).toBe(
      "stream SLUICE_EVENTS not found — is the Sluice broker running?"
    )
    expect(new PublishTimeout({ eventId: "evt-1", timeoutMs: 5000 }).message).toMatch(/retry later with the same id \(evt-1\)/)
  })
})
