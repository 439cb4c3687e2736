/**
 * A TCP proxy in front of a real server, which a test can cut and restore: the way to make
 * the shared Postgres unreachable for one broker without stopping it for every other test.
 */
import type { Scope } from "effect"
import { Effect } from "effect"
import type { Socket } from "node:net"
import { connect, createServer } from "node:net"
import { throwawayDatabase } from "./postgres.js"

export interface TcpProxy {
  readonly port: number
  /** Drops every open connection and refuses new ones until `restore`. */
  readonly cut: () => void
  readonly restore: () => void
}

export const tcpProxy = (target: { host: string; port: number }): Effect.Effect<TcpProxy, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<TcpProxy & { close: () => Promise<void> }>((resolve) => {
          let open = true
          const sockets = new Set<Socket>()
          const track = (socket: Socket) => {
            sockets.add(socket)
            socket.on("close", () => sockets.delete(socket))
          }
          const server = createServer((client) => {
            track(client)
            if (!open) return client.destroy()
            const upstream = connect(target.port, target.host)
            track(upstream)
            client.pipe(upstream).pipe(client)
            client.on("error", () => upstream.destroy())
            upstream.on("error", () => client.destroy())
          })
          server.listen(0, "127.0.0.1", () => {
            const address = server.address()
            const port = typeof address === "object" && address !== null ? address.port : 0
            resolve({
              port,
              cut: () => {
                open = false
                for (const socket of sockets) socket.destroy()
              },
              restore: () => {
                open = true
              },
              close: () =>
                new Promise<void>((done) => {
                  for (const socket of sockets) socket.destroy()
                  server.close(() => done())
                })
            })
          })
        })
    ),
    (proxy) => Effect.promise(() => proxy.close())
  )

/**
 * A throwaway database reached through a proxy a test can cut: `databaseUrl` for direct
 * queries, `viaProxy` for the broker whose history should see the outage.
 */
export const databaseBehindProxy = Effect.gen(function* () {
  const databaseUrl = yield* throwawayDatabase
  const proxy = yield* tcpProxy({ host: "127.0.0.1", port: 5432 })
  const viaProxy = databaseUrl.replace(/127\.0\.0\.1:5432|localhost:5432/, `127.0.0.1:${proxy.port}`)
  if (viaProxy === databaseUrl) return yield* Effect.dieMessage(`cannot route ${databaseUrl} through the proxy`)
  return { databaseUrl, viaProxy, proxy }
})
