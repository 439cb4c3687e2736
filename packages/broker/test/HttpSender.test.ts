import { createServer } from "node:http"
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { expect, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import * as HttpSender from "../src/HttpSender.js"

/** A real receiver on 127.0.0.1; released with the test scope, cutting any hanging connections. */
const receiver = (handler: RequestListener) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly port: number; readonly close: () => Promise<void> }>((resume) => {
      const server = createServer(handler)
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(
          Effect.succeed({
            url: `http://127.0.0.1:${port}/hook`,
            port,
            close: () =>
              new Promise<void>((resolve) => {
                server.closeAllConnections()
                server.close(() => resolve())
              })
          })
        )
      })
    }),
    (bound) => Effect.promise(bound.close)
  )

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

const post = (url: string, timeoutMs = 5_000): HttpSender.SendRequest => ({
  url,
  method: "POST",
  headers: { "webhook-id": "evt_1" },
  body: '{"hello":"world"}',
  timeoutMs
})

const send = (request: HttpSender.SendRequest) => Effect.flatMap(HttpSender.HttpSender, (sender) => sender.send(request))

/** A port nothing listens on: bound once, then released. */
const closedPort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

const respond = (res: ServerResponse, status: number, headers: Record<string, string>, body: string) => {
  res.writeHead(status, headers)
  res.end(body)
}

layer(HttpSender.layerWith({ allowPrivateDestinations: true }))("HttpSender", (it) => {
  it.scoped("posts the body with its headers and returns status and excerpt", () =>
    Effect.gen(function* () {
      const seen = yield* Deferred.make<{ method: string; headers: IncomingMessage["headers"]; body: string }>()
      const { url } = yield* receiver((req, res) => {
        void readBody(req).then((body) => {
          Deferred.unsafeDone(seen, Effect.succeed({ method: req.method ?? "", headers: req.headers, body }))
          respond(res, 200, { "content-type": "text/plain" }, "thanks")
        })
      })
      const result = yield* send(post(url))
      expect(result).toMatchObject({ status: 200, retryAfter: null, error: null, responseExcerpt: "thanks" })
      expect(result.durationMs).toBeGreaterThanOrEqual(0)
      const request = yield* Deferred.await(seen)
      expect(request.method).toBe("POST")
      expect(request.body).toBe('{"hello":"world"}')
      expect(request.headers["content-type"]).toBe("application/json")
      expect(request.headers["user-agent"]).toBe(HttpSender.userAgent)
      expect(request.headers["webhook-id"]).toBe("evt_1")
    })
  )

  it.scoped("lets the caller's headers replace the defaults, whatever their case", () =>
    Effect.gen(function* () {
      const seen = yield* Deferred.make<Array<string>>()
      const { url } = yield* receiver((req, res) => {
        Deferred.unsafeDone(seen, Effect.succeed(req.rawHeaders))
        respond(res, 204, {}, "")
      })
      const request = post(url)
      yield* send({ ...request, headers: { ...request.headers, "Content-Type": "application/cloudevents+json" } })
      const raw = yield* Deferred.await(seen)
      const contentTypes = raw.filter((_, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === "content-type")
      expect(contentTypes).toEqual(["application/cloudevents+json"])
    })
  )

  it.scoped("returns a 500 as a status, not an error", () =>
    Effect.gen(function* () {
      const { url } = yield* receiver((_req, res) => respond(res, 500, {}, "boom"))
      expect(yield* send(post(url))).toMatchObject({ status: 500, error: null, responseExcerpt: "boom" })
    })
  )

  it.scoped("returns the Retry-After of a 429", () =>
    Effect.gen(function* () {
      const { url } = yield* receiver((_req, res) => respond(res, 429, { "retry-after": "7" }, ""))
      expect(yield* send(post(url))).toMatchObject({ status: 429, retryAfter: "7", error: null, responseExcerpt: null })
    })
  )

  it.scoped("does not follow redirects", () =>
    Effect.gen(function* () {
      let followed = 0
      const target = yield* receiver((_req, res) => {
        followed++
        respond(res, 200, {}, "")
      })
      const { url } = yield* receiver((_req, res) => respond(res, 302, { location: target.url }, ""))
      expect(yield* send(post(url))).toMatchObject({ status: 302, error: null })
      expect(followed).toBe(0)
    })
  )

  it.scoped("times out on a receiver that never answers", () =>
    Effect.gen(function* () {
      const { url } = yield* receiver(() => {})
      const result = yield* send(post(url, 200))
      expect(result).toMatchObject({ status: null, error: "timeout after 200 ms", responseExcerpt: null })
      expect(result.durationMs).toBeGreaterThanOrEqual(190)
      expect(result.durationMs).toBeLessThan(2_000)
    })
  )

  it.scoped("cuts a body trickled byte by byte at the total timeout", () =>
    Effect.gen(function* () {
      const { url } = yield* receiver((_req, res) => {
        res.writeHead(200, { "content-type": "text/plain" })
        res.flushHeaders()
        const timer = setInterval(() => res.write("."), 20)
        res.on("close", () => clearInterval(timer))
      })
      const result = yield* send(post(url, 300))
      expect(result).toMatchObject({ status: 200, error: "timeout after 300 ms" })
      expect(result.durationMs).toBeGreaterThanOrEqual(290)
      expect(result.durationMs).toBeLessThan(2_000)
    })
  )

  it.scoped("reports a refused connection", () =>
    Effect.gen(function* () {
      const port = yield* closedPort
      const result = yield* send(post(`http://127.0.0.1:${port}/hook`))
      expect(result.status).toBeNull()
      expect(result.error).toMatch(/^connection refused: .*ECONNREFUSED/)
    })
  )

  it.scoped("reads at most maxResponseBytes of a huge body and keeps a 1 KiB excerpt", () =>
    Effect.gen(function* () {
      const total = 10 * 1024 * 1024
      const outcome = yield* Deferred.make<{ written: number; finished: boolean }>()
      const { url } = yield* receiver((_req, res) => {
        res.writeHead(200, { "content-length": String(total) })
        const chunk = Buffer.alloc(64 * 1024, "x")
        let written = 0
        const pump = () => {
          while (written < total) {
            written += chunk.length
            if (!res.write(chunk)) return void res.once("drain", pump)
          }
          res.end()
        }
        res.on("close", () => Deferred.unsafeDone(outcome, Effect.succeed({ written, finished: res.writableFinished })))
        pump()
      })
      const result = yield* send(post(url))
      expect(result).toMatchObject({ status: 200, error: null })
      expect(result.responseExcerpt).toBe("x".repeat(HttpSender.maxExcerptBytes))
      const server = yield* Deferred.await(outcome)
      expect(server.finished).toBe(false)
      expect(server.written).toBeLessThan(total)
    })
  )

  it.scoped("replaces invalid UTF-8 in the excerpt", () =>
    Effect.gen(function* () {
      const { url } = yield* receiver((_req, res) => {
        res.writeHead(400)
        res.end(Buffer.from([0x6f, 0x6b, 0xff, 0x21]))
      })
      expect(yield* send(post(url))).toMatchObject({ status: 400, responseExcerpt: "ok\uFFFD!" })
    })
  )

  it.scoped("aborts the request when the sending fiber is interrupted", () =>
    Effect.gen(function* () {
      const arrived = yield* Deferred.make<void>()
      const closed = yield* Deferred.make<void>()
      const { url } = yield* receiver((req) => {
        req.socket.on("close", () => Deferred.unsafeDone(closed, Effect.void))
        Deferred.unsafeDone(arrived, Effect.void)
      })
      const fiber = yield* Effect.fork(send(post(url, 60_000)))
      yield* Deferred.await(arrived)
      yield* Fiber.interrupt(fiber)
      yield* Deferred.await(closed)
    })
  )
})
