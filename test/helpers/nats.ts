/**
 * A real nats-server for tests: on a free port, with a throwaway JetStream store under the
 * OS temp directory that is deleted afterwards. Effect tests share one per file with
 * `layer(NatsFixture.layer)`; plain vitest files call `useNats()`.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { afterAll, beforeAll } from "vitest"
import { NatsServer } from "@sluice/broker"

/** A nats-server with its own temp store, stopped and its store deleted when the scope closes. */
export const tempNatsServer: Effect.Effect<
  NatsServer.NatsServer,
  NatsServer.NatsServerNotFound | NatsServer.NatsServerFailed,
  Scope.Scope
> = Effect.gen(function* () {
  const storeDir = yield* Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "sluice-nats-"))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )
  return yield* NatsServer.start({ storeDir })
})

/** The test file's nats-server. */
export class NatsFixture extends Context.Tag("@sluice/test/NatsFixture")<NatsFixture, NatsServer.NatsServer>() {
  /** One server for every test inside `layer(NatsFixture.layer)(...)`. */
  static readonly layer: Layer.Layer<NatsFixture, NatsServer.NatsServerNotFound | NatsServer.NatsServerFailed> =
    Layer.scoped(NatsFixture, tempNatsServer)
}

/**
 * Starts one nats-server before the file's tests and stops it after them; the returned
 * getter gives the running server (call it inside tests, not at module level).
 */
export const useNats = (): (() => NatsServer.NatsServer) => {
  const scope = Effect.runSync(Scope.make())
  let server: NatsServer.NatsServer | undefined
  beforeAll(async () => {
    server = await Effect.runPromise(Scope.extend(tempNatsServer, scope))
  })
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))
  return () => {
    if (server === undefined) throw new Error("useNats(): the server is only available inside tests")
    return server
  }
}
