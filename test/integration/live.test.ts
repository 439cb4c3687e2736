/** The admin UI's live stream: Server-Sent Events of the destinations, behind the admin token. */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { brokerOnFixture } from "../helpers/broker.js"
import { NatsFixture } from "../helpers/nats.js"
import { scopedReceiver } from "../helpers/receiver.js"

/** Reads the stream until `done` says the text so far is enough, then hangs up. */
const readUntil = (url: string, done: (text: string) => boolean) =>
  Effect.acquireUseRelease(
    Effect.sync(() => new AbortController()),
    (abort) =>
      Effect.promise(async () => {
        const response = await fetch(url, { signal: abort.signal })
        const reader = response.body!.getReader()
        const decoder = new TextDecoder()
        let text = ""
        while (!done(text)) {
          const { value, done: ended } = await reader.read()
          if (ended) break
          text += decoder.decode(value, { stream: true })
        }
        return { status: response.status, type: response.headers.get("content-type"), text }
      }),
    (abort) => Effect.sync(() => abort.abort())
  )

layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })("live stream", (it) => {
  it.scoped("refuses a missing or wrong token; sends the destinations and then each health change", () =>
    Effect.gen(function* () {
      const { client, adminUrl, adminToken } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      for (const query of ["", "?token=nope"]) {
        const refused = yield* Effect.promise(() => fetch(`${adminUrl}/api/v1/live${query}`))
        expect(refused.status).toBe(401)
      }
      yield* client.destinations.create({ payload: { id: "watched", url: receiver.url, subscriptions: [">"] } })
      const url = `${adminUrl}/api/v1/live?token=${encodeURIComponent(adminToken)}`
      const first = yield* readUntil(url, (text) => text.includes("event: destinations"))
      expect(first.status).toBe(200)
      expect(first.type).toContain("text/event-stream")
      expect(first.text).toContain('"id":"watched"')

      const paused = readUntil(url, (text) => text.includes('"state":"paused"'))
      yield* client.destinations.pause({ path: { id: "watched" } })
      const after = yield* paused
      expect(after.text).toMatch(/event: destinations\ndata: \[.*"state":"paused"/)
    })
  )
})
