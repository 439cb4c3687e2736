import { afterEach, describe, expect, it } from "vitest"
import type { Receiver } from "./receiver.js"
import { startReceiver } from "./receiver.js"
import { waitFor } from "./waitFor.js"

describe("receiver", () => {
  let receiver: Receiver
  afterEach(() => receiver.close())

  it("answers as scripted and records each request", async () => {
    receiver = await startReceiver((_request, n) =>
      n === 1 ? { status: 429, headers: { "retry-after": "2" }, body: "slow down" } : { body: { ok: true } }
    )
    const first = await fetch(`${receiver.url}/hook?x=1`, {
      method: "POST",
      headers: { "content-type": "application/json", "webhook-id": "msg_1" },
      body: JSON.stringify({ type: "order.created" })
    })
    expect(first.status).toBe(429)
    expect(first.headers.get("retry-after")).toBe("2")
    expect(await first.text()).toBe("slow down")
    const second = await fetch(`${receiver.url}/hook`, { method: "POST", body: "not json" })
    expect(await second.json()).toEqual({ ok: true })

    const [a, b] = receiver.received()
    expect(a).toMatchObject({ n: 1, method: "POST", url: "/hook?x=1", path: "/hook", json: { type: "order.created" } })
    expect(a.headers["webhook-id"]).toBe("msg_1")
    expect(b).toMatchObject({ n: 2, body: "not json", json: undefined })
    expect(b.at).toBeGreaterThanOrEqual(a.at)
  })

  it("hangs until the client gives up, counting the requests in flight", async () => {
    receiver = await startReceiver(() => ({ hang: true }))
    const client = new AbortController()
    const answers = Promise.allSettled([1, 2].map(() => fetch(receiver.url, { signal: client.signal })))
    await receiver.waitForCount(2, 5_000)
    expect(receiver.inFlight()).toBe(2)
    client.abort()
    const results = await answers
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"])
    expect(receiver.maxInFlight()).toBe(2)
    await waitFor(() => receiver.inFlight() === 0, { description: "aborted requests to leave flight" })
  })

  it("resets the connection when told to, and serves again after setScript", async () => {
    receiver = await startReceiver(() => ({ destroy: true }))
    await expect(fetch(receiver.url)).rejects.toThrow()
    receiver.setScript(() => ({ status: 204, delayMs: 50 }))
    const started = Date.now()
    const response = await fetch(receiver.url)
    expect(response.status).toBe(204)
    expect(Date.now() - started).toBeGreaterThanOrEqual(45)
    expect(receiver.received()).toHaveLength(2)
  })

  it("fails waitForCount with the count it got", async () => {
    receiver = await startReceiver()
    await fetch(receiver.url)
    await expect(receiver.waitForCount(2, 100)).rejects.toThrow("2 requests at the receiver (got 1)")
  })

  it("closes while a request hangs", async () => {
    receiver = await startReceiver(() => ({ hang: true }))
    const pending = fetch(receiver.url)
    await receiver.waitForCount(1)
    await receiver.close()
    await expect(pending).rejects.toThrow()
  })
})
