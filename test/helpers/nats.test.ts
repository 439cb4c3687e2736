import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { describe, it } from "vitest"
import { NatsFixture, useNats } from "./nats.js"

/** JetStream answers on the server: it is up and its store is writable. */
const jetStreamAnswers = async (url: string): Promise<boolean> => {
  const nc = await connect({ servers: url })
  try {
    const jsm = await jetstreamManager(nc)
    return (await jsm.getAccountInfo()).streams === 0
  } finally {
    await nc.close()
  }
}

layer(NatsFixture.layer)("NatsFixture.layer", (it) => {
  it.effect("provides a running JetStream server", () =>
    Effect.gen(function* () {
      const server = yield* NatsFixture
      expect(yield* Effect.promise(() => jetStreamAnswers(server.url))).toBe(true)
    })
  )
})

describe("useNats", () => {
  const nats = useNats()
  it("provides a running JetStream server", async () => {
    expect(await jetStreamAnswers(nats().url)).toBe(true)
  })
})
