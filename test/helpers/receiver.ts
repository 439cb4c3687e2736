/**
 * A real HTTP destination for tests: it records every request Sluice sends and answers as
 * the test scripts it — a status, a Retry-After, a slow answer, no answer at all, a reset
 * connection — so delivery, retry, rate-limit and isolation behaviour is tested over real
 * sockets.
 */
import type { IncomingHttpHeaders } from "node:http"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import type { Scope } from "effect"
import { Effect } from "effect"
import { waitFor } from "./waitFor.js"

/** One request as the receiver saw it. */
export interface ReceivedRequest {
  /** 1 for the first request this receiver got. */
  readonly n: number
  readonly method: string
  /** Path and query, as sent. */
  readonly url: string
  /** Path without the query. */
  readonly path: string
  /** Lower-case names, as Node gives them. */
  readonly headers: IncomingHttpHeaders
  readonly body: string
  /** The body parsed as JSON; undefined when it is not JSON. */
  readonly json: unknown
  /** Date.now() when the request's headers arrived. */
  readonly at: number
}

/** How to answer one request. Everything is optional: `{}` is a 200 with an empty body. */
export interface ReceiverResponse {
  readonly status?: number
  readonly headers?: Readonly<Record<string, string>>
  /** A string is sent as is; anything else as JSON. */
  readonly body?: unknown
  /** Wait this long before answering. */
  readonly delayMs?: number
  /** Never answer (the client's timeout has to end it). */
  readonly hang?: boolean
  /** Reset the connection instead of answering. */
  readonly destroy?: boolean
  /** Send the body in writes over time instead (`body` is then ignored): a trickle, a huge or an endless answer. */
  readonly stream?: StreamedBody
}

/** A body written piece by piece, each write waiting for the socket to drain, until done or the client hangs up. */
export interface StreamedBody {
  /** What each write sends. */
  readonly chunk: string | Uint8Array
  /** How many writes make the whole body. */
  readonly writes: number
  /** Pause between writes; 0 writes as fast as the client reads. */
  readonly intervalMs: number
  /** Told how many writes the socket took before the body ended (`completed`) or the connection closed. */
  readonly onEnd?: (outcome: { readonly writes: number; readonly completed: boolean }) => void
}

/** Decides the answer to the n-th request (n starts at 1). */
export type ReceiverScript = (request: ReceivedRequest, n: number) => ReceiverResponse | Promise<ReceiverResponse>

export interface Receiver {
  /** `http://127.0.0.1:<port>`; append a path for a destination URL. */
  readonly url: string
  readonly port: number
  /** Every request so far, oldest first. */
  readonly received: () => ReadonlyArray<ReceivedRequest>
  /** Requests received and not yet answered (or reset, or abandoned by the client). */
  readonly inFlight: () => number
  /** The highest `inFlight` seen so far. */
  readonly maxInFlight: () => number
  /** Resolves with all requests once at least `count` have arrived; default timeout 10 s. */
  readonly waitForCount: (count: number, timeoutMs?: number) => Promise<ReadonlyArray<ReceivedRequest>>
  /** Changes how the following requests are answered. */
  readonly setScript: (script: ReceiverScript) => void
  /** Stops listening and drops every open connection, hanging ones included. */
  readonly close: () => Promise<void>
}

const ok: ReceiverScript = () => ({})

const parseJson = (body: string): unknown => {
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}

/** Starts a receiver on a free 127.0.0.1 port; answers 200 until told otherwise. */
export const startReceiver = async (script: ReceiverScript = ok): Promise<Receiver> => {
  let current = script
  const requests: Array<ReceivedRequest> = []
  const timers = new Set<NodeJS.Timeout>()
  let inFlight = 0
  let maxInFlight = 0

  const server = createServer((req, res) => {
    const at = Date.now()
    inFlight += 1
    maxInFlight = Math.max(maxInFlight, inFlight)
    res.once("close", () => {
      inFlight -= 1
    })
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8")
      const url = req.url ?? "/"
      const request: ReceivedRequest = {
        n: requests.length + 1,
        method: req.method ?? "GET",
        url,
        path: url.split("?")[0],
        headers: req.headers,
        body,
        json: parseJson(body),
        at
      }
      requests.push(request)
      const streamBody = (status: number | undefined, headers: ReceiverResponse["headers"], stream: StreamedBody) => {
        const { chunk, writes, intervalMs, onEnd } = stream
        let written = 0
        let ended = false
        const end = (completed: boolean) => {
          if (ended) return
          ended = true
          onEnd?.({ writes: written, completed })
        }
        res.once("close", () => end(false))
        res.writeHead(status ?? 200, headers)
        const next = () => {
          if (ended || res.destroyed) return end(false)
          if (written === writes) {
            res.end(() => end(true))
            return
          }
          written += 1
          const drained = res.write(chunk)
          const goOn = () => {
            if (intervalMs <= 0) return void setImmediate(next)
            const timer = setTimeout(() => {
              timers.delete(timer)
              next()
            }, intervalMs)
            timers.add(timer)
          }
          if (drained) goOn()
          else res.once("drain", goOn)
        }
        next()
      }
      const answer = (response: ReceiverResponse) => {
        if (response.hang === true) return
        if (response.destroy === true) {
          req.socket.resetAndDestroy()
          return
        }
        if (response.stream !== undefined) return streamBody(response.status, response.headers, response.stream)
        const text =
          response.body === undefined ? "" : typeof response.body === "string" ? response.body : JSON.stringify(response.body)
        res.writeHead(response.status ?? 200, {
          ...(typeof response.body === "string" || response.body === undefined ? {} : { "content-type": "application/json" }),
          ...response.headers
        })
        res.end(text)
      }
      Promise.resolve(current(request, request.n)).then(
        (response) => {
          if (response.delayMs === undefined || response.delayMs <= 0) return answer(response)
          const timer = setTimeout(() => {
            timers.delete(timer)
            answer(response)
          }, response.delayMs)
          timers.add(timer)
        },
        (error: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" })
          res.end(`receiver script failed: ${String(error)}`)
        }
      )
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const port = (server.address() as AddressInfo).port

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received: () => [...requests],
    inFlight: () => inFlight,
    maxInFlight: () => maxInFlight,
    waitForCount: (count, timeoutMs = 10_000) =>
      waitFor(() => requests.length >= count && [...requests], {
        description: () => `${count} requests at the receiver (got ${requests.length})`,
        timeoutMs
      }),
    setScript: (script) => {
      current = script
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer)
        timers.clear()
        server.close(() => resolve())
        server.closeAllConnections()
      })
  }
}

/** `startReceiver` for Effect tests: closed when the scope closes. */
export const scopedReceiver = (script?: ReceiverScript): Effect.Effect<Receiver, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => startReceiver(script)),
    (receiver) => Effect.promise(() => receiver.close())
  )
