import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, expect, it } from "@effect/vitest"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { Subjects } from "@sluice/protocol"
import { Effect } from "effect"
import * as NatsServer from "../src/NatsServer.js"
import { ensureStreams } from "../src/Streams.js"

const storeDir = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "sluice-nats-test-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

const connection = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(() => connect({ servers: url })),
    (nc) => Effect.promise(() => nc.close())
  )

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("NatsServer", () => {
  it.scopedLive("keeps streams and messages across kill -9 and a restart on the same port", () =>
    Effect.gen(function* () {
      const server = yield* NatsServer.start({ storeDir: yield* storeDir })
      expect(server.url).toBe(`nats://127.0.0.1:${server.port}`)
      expect(server.port).not.toBe(4222)

      const ack = yield* Effect.scoped(
        Effect.gen(function* () {
          const nc = yield* connection(server.url)
          const jsm = yield* Effect.promise(() => jetstreamManager(nc))
          yield* Effect.promise(() => ensureStreams(jsm))
          return yield* Effect.promise(() =>
            jsm.jetstream().publish(Subjects.eventSubject("order.created"), JSON.stringify({ id: "e1" }), { msgID: "e1" })
          )
        })
      )
      expect(ack.stream).toBe(Subjects.EVENTS_STREAM)

      const killedPid = server.pid()
      yield* server.kill
      expect(server.pid()).toBeUndefined()
      expect(isAlive(killedPid!)).toBe(false)

      yield* server.restart
      expect(server.pid()).not.toBe(killedPid)
      const nc = yield* connection(server.url)
      const jsm = yield* Effect.promise(() => jetstreamManager(nc))
      const info = yield* Effect.promise(() => jsm.streams.info(Subjects.EVENTS_STREAM))
      expect(info.state.messages).toBe(1)
      const stored = yield* Effect.promise(() => jsm.streams.getMessage(Subjects.EVENTS_STREAM, { seq: ack.seq }))
      expect(stored?.json()).toEqual({ id: "e1" })
    })
  )

  it.live("stops the server when its scope closes", () =>
    Effect.gen(function* () {
      const pid = yield* Effect.scoped(
        Effect.gen(function* () {
          const server = yield* NatsServer.start({ storeDir: yield* storeDir })
          return server.pid()!
        })
      )
      expect(isAlive(pid)).toBe(false)
    })
  )

  it.scopedLive("fails with NatsServerFailed and the server's log when the port is taken", () =>
    Effect.gen(function* () {
      const first = yield* NatsServer.start({ storeDir: yield* storeDir })
      const error = yield* Effect.flip(NatsServer.start({ storeDir: yield* storeDir, port: first.port }))
      assert(error._tag === "NatsServerFailed")
      expect(error.stderr.join("\n")).toContain("address already in use")
    })
  )

  it.scopedLive("fails with NatsServerNotFound when SLUICE_NATS_SERVER_BIN points nowhere", () =>
    Effect.gen(function* () {
      const previous = process.env.SLUICE_NATS_SERVER_BIN
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          process.env.SLUICE_NATS_SERVER_BIN = "/nonexistent/nats-server"
        }),
        () =>
          Effect.sync(() => {
            if (previous === undefined) delete process.env.SLUICE_NATS_SERVER_BIN
            else process.env.SLUICE_NATS_SERVER_BIN = previous
          })
      )
      const error = yield* Effect.flip(NatsServer.start({ storeDir: yield* storeDir }))
      expect(error._tag).toBe("NatsServerNotFound")
      expect(error.message).toContain("apt-get install nats-server")
    })
  )
})
