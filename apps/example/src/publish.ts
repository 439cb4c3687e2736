/**
 * A producer in plain TypeScript: publish a few events, then poll their status until every
 * destination that subscribed has them (or given up on them). From the repository root,
 * with a broker running (`pnpm start`):
 *
 *   pnpm exec tsx apps/example/src/publish.ts
 *
 * SLUICE_ADMIN_URL (default http://127.0.0.1:7700) and SLUICE_PRODUCER_TOKEN (default: the
 * token a local broker generated into SLUICE_DATA_DIR, default .sluice) reach the broker's
 * status endpoint — a producer needs no admin token; the NATS URL is SLUICE_NATS_URL or, by
 * default, the one the broker's `/api/v1/info` names.
 */
import type { EventStatus } from "@sluice/sdk"
import { connect, EventNotFound } from "@sluice/sdk"
import { readFile } from "node:fs/promises"
import { join } from "node:path"

const adminUrl = process.env.SLUICE_ADMIN_URL ?? "http://127.0.0.1:7700"
const producerToken =
  process.env.SLUICE_PRODUCER_TOKEN ??
  (await readFile(join(process.env.SLUICE_DATA_DIR ?? ".sluice", "producer-token"), "utf8")).trim()
const natsUrl =
  process.env.SLUICE_NATS_URL ?? ((await (await fetch(`${adminUrl}/api/v1/info`)).json()) as { natsUrl: string }).natsUrl

const sluice = await connect({ servers: natsUrl, adminUrl, producerToken })
try {
  const orderId = `order-${Date.now()}`
  const published = await sluice.publishMany([
    { type: "order.created", key: orderId, version: 1, data: { id: orderId, total: 42 } },
    { type: "order.paid", key: orderId, version: 2, data: { id: orderId, method: "card" } },
    { type: "order.shipped", key: orderId, version: 3, data: { id: orderId, carrier: "post" } }
  ])
  for (const { duplicate, id } of published) console.log(`published ${id}${duplicate ? " (duplicate)" : ""}`)

  const deadline = Date.now() + 30_000
  for (const { id } of published) {
    let status: EventStatus | undefined
    while (Date.now() < deadline) {
      try {
        status = await sluice.status(id)
        // Settled: no delivery will change without an operator.
        if (status.settled) break
      } catch (error) {
        // History is written moments after the event is stored: not found yet means "ask again".
        if (!(error instanceof EventNotFound)) throw error
      }
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    const states = status?.deliveries.map((d) => `${d.destinationId}: ${d.state}`).join(", ")
    console.log(`${id} ${status === undefined ? "not in the history yet" : states || "no destination subscribes to it"}`)
  }
} finally {
  await sluice.close()
}
