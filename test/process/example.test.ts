/**
 * The SDK example (apps/example/src/publish.ts) run as a user runs it, against a real
 * broker: it finds NATS through `/api/v1/info`, publishes, and reports each event delivered.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { startBroker } from "../helpers/broker.js"
import { tempNatsServer } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import { scopedReceiver } from "../helpers/receiver.js"

const repoRoot = fileURLToPath(new URL("../..", import.meta.url))

it.scopedLive("the publish example publishes three events and reports them delivered", () =>
  Effect.gen(function* () {
    const nats = yield* tempNatsServer
    const databaseUrl = yield* throwawayDatabase
    const { adminUrl, client, producerToken } = yield* startBroker({ natsUrl: nats.url, databaseUrl })
    const receiver = yield* scopedReceiver()
    yield* client.destinations.create({ payload: { id: "shop", url: receiver.url, subscriptions: ["order.*"] } })

    const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("SLUICE_")))
    const stdout = yield* Effect.async<string, Error>((resume) => {
      execFile(
        process.execPath,
        ["--import", "tsx", "apps/example/src/publish.ts"],
        { cwd: repoRoot, env: { ...inherited, SLUICE_ADMIN_URL: adminUrl, SLUICE_PRODUCER_TOKEN: producerToken }, timeout: 80_000 },
        (error, out, err) => resume(error ? Effect.fail(new Error(`${error.message}\n${err}`)) : Effect.succeed(out))
      )
    })

    const published = [...stdout.matchAll(/^published (\S+)$/gm)].map((m) => m[1])
    expect(published).toHaveLength(3)
    for (const id of published) expect(stdout).toContain(`${id} shop: completed`)
    expect(receiver.received().map((r) => r.headers["webhook-id"])).toEqual(published)
  }),
  90_000
)
