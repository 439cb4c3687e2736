/**
 * `sluice start` as a process: the banner tells where everything is, the admin API answers,
 * SIGTERM and SIGINT end it with exit code 0 and take the embedded nats-server down with it,
 * and a bad setting or an unreachable dependency stops it at once with a message naming it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { join } from "node:path"
import { processesMentioning, startBrokerProcess } from "../helpers/brokerProcess.js"
import { tempNatsServer } from "../helpers/nats.js"

/** Starts with embedded NATS and PGlite, checks it serves, stops it with `signal`. */
const runAndStop = (signal: NodeJS.Signals) =>
  Effect.gen(function* () {
    // SLUICE_ADMIN_PORT=0 (the helper's default): the banner shows the port actually bound.
    const broker = yield* startBrokerProcess()
    expect(broker.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:[1-9]\d*$/)
    const natsStore = join(broker.dataDir, "nats")
    const banner = broker.stdout()
    const nats = /NATS: +(nats:\/\/127\.0\.0\.1:\d+) \(embedded, store (.+)\)\n/.exec(banner)
    expect(banner).toContain(`admin UI:  ${broker.adminUrl}/\n`)
    expect(banner).toContain(`admin API: ${broker.adminUrl}/api/v1\n`)
    expect(nats?.[2]).toBe(natsStore)
    expect(banner).toContain(`history:   PGlite (embedded, ${join(broker.dataDir, "pglite")})\n`)

    const info = yield* broker.client.system.info()
    expect(info).toMatchObject({ natsUrl: nats?.[1], stream: "SLUICE_EVENTS" })
    expect(yield* processesMentioning(natsStore)).toHaveLength(1)

    const exit = yield* broker.stop(signal, 5_000)
    expect(exit).toEqual({ code: 0, signal: null })
    expect(yield* processesMentioning(natsStore)).toEqual([])
  })

describe("sluice start", () => {
  it.scopedLive("runs embedded NATS and PGlite under the data directory, prints where, and exits 0 on SIGTERM, nats-server included", () =>
    runAndStop("SIGTERM"), 120_000
  )

  it.scopedLive("exits 0 on SIGINT (Ctrl+C), nats-server included", () => runAndStop("SIGINT"), 120_000)

  for (const [setting, value] of [
    ["SLUICE_ADMIN_PORT", "abc"],
    ["SLUICE_STREAM_MAX_AGE", "forever"]
  ] as const) {
    it.scopedLive(`${setting}=${value} stops the start with a non-zero exit naming the setting`, () =>
      Effect.gen(function* () {
        const failed = yield* startBrokerProcess({ env: { [setting]: value } }).pipe(Effect.flip)
        expect(failed.exit?.code).toBeGreaterThan(0)
        expect(failed.stderr).toContain(setting)
        // Decoding the settings comes first: nothing was started.
        expect(failed.stdout).not.toContain("nats-server started")
      })
    )
  }

  it.scopedLive("an unreachable NATS stops the start with a non-zero exit naming it", () =>
    Effect.gen(function* () {
      const failed = yield* startBrokerProcess({ natsUrl: "nats://127.0.0.1:1" }).pipe(Effect.flip)
      expect(failed.exit?.code).toBeGreaterThan(0)
      expect(failed.stderr).toContain("cannot connect to NATS at nats://127.0.0.1:1")
    })
  )

  it.scopedLive("an unreachable Postgres stops the start with a non-zero exit naming it, password hidden", () =>
    Effect.gen(function* () {
      const nats = yield* tempNatsServer
      const failed = yield* startBrokerProcess({
        natsUrl: nats.url,
        databaseUrl: "postgres://sluice:secret@127.0.0.1:1/history"
      }).pipe(Effect.flip)
      expect(failed.exit?.code).toBeGreaterThan(0)
      expect(failed.stderr).toContain("cannot open Postgres at postgres://sluice:***@127.0.0.1:1/history")
      expect(failed.stderr + failed.stdout).not.toContain("secret")
    })
  )
})
