/**
 * One HTTP request to a destination. Every way it can end — a response, a timeout, a refused
 * or reset connection, an interruption — is a value the actor classifies (`ResponseClass`);
 * nothing here fails or throws, and nothing a receiver does can hold a sender past its timeout
 * or make it read more than a bounded number of bytes.
 */
import { Context, Effect, Layer } from "effect"
import { Agent, request } from "undici"
import type { Dispatcher } from "undici"
import { VERSION } from "./version.js"

/** Response bytes read at most; smaller bodies are drained whole so the connection is reused. */
export const maxResponseBytes = 64 * 1024
/** Response bytes kept as the attempt's excerpt in history. */
export const maxExcerptBytes = 1024
/** Sent on every request so receivers can tell Sluice's traffic apart in their logs. */
export const userAgent = `Sluice/${VERSION}`
/** Connections kept per destination origin: the ceiling on parallel requests to one receiver. */
export const connectionsPerOrigin = 128

/** One delivery request; the body is sent exactly as given (it is what the signature covers). */
export interface SendRequest {
  readonly url: string
  readonly method: "POST" | "PUT"
  /** Added to (and overriding) the defaults: `content-type: application/json` and the `user-agent`. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  /** Bounds the whole exchange: connecting, sending, the response headers and reading the body. */
  readonly timeoutMs: number
}

/**
 * How the request ended. `error` is null only when a complete response was read; `status`
 * is set whenever response headers arrived, even if reading the body then failed or timed out.
 */
export interface SendResult {
  readonly status: number | null
  readonly retryAfter: string | null
  readonly error: string | null
  readonly durationMs: number
  /** The first `maxExcerptBytes` of the body as text (invalid UTF-8 replaced); null when empty. */
  readonly responseExcerpt: string | null
}

/** Sends delivery requests over a shared keep-alive connection pool. */
export class HttpSender extends Context.Tag("@sluice/broker/HttpSender")<
  HttpSender,
  { readonly send: (request: SendRequest) => Effect.Effect<SendResult> }
>() {}

const headerValue = (value: string | Array<string> | undefined): string | null =>
  value === undefined ? null : Array.isArray(value) ? (value[0] ?? null) : value

/** Reads up to `maxResponseBytes`, then destroys the stream so an endless body stops costing anything. */
const readCapped = async (body: Dispatcher.ResponseData["body"]): Promise<Buffer> => {
  const chunks: Array<Buffer> = []
  let total = 0
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk)
    total += chunk.length
    if (total >= maxResponseBytes) {
      body.destroy()
      break
    }
  }
  return Buffer.concat(chunks, total)
}

const excerptOf = (bytes: Buffer): string | null =>
  bytes.length === 0
    ? null
    : // `stream: true` holds back a multi-byte character cut at the end instead of replacing it.
      new TextDecoder("utf-8").decode(bytes.subarray(0, maxExcerptBytes), { stream: true })

const codeOf = (error: unknown): string | undefined => {
  if (typeof error !== "object" || error === null) return undefined
  if ("code" in error && typeof error.code === "string") return error.code
  return "cause" in error ? codeOf(error.cause) : undefined
}

const messageOf = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error)
  return error.cause instanceof Error && error.cause.message !== error.message
    ? `${error.message}: ${error.cause.message}`
    : error.message
}

const timeoutCodes = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"])

const describeError = (error: unknown, timeoutMs: number): string => {
  const code = codeOf(error)
  if (code !== undefined && timeoutCodes.has(code)) return `timeout after ${timeoutMs} ms`
  switch (code) {
    case "ECONNREFUSED":
      return `connection refused: ${messageOf(error)}`
    case "ECONNRESET":
    case "EPIPE":
    case "UND_ERR_SOCKET":
      return `connection reset: ${messageOf(error)}`
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `host not found: ${messageOf(error)}`
    default:
      return `request failed: ${code === undefined ? "" : `${code} `}${messageOf(error)}`
  }
}

/** Defaults first, then the caller's headers; names are lower-cased so an override replaces, never duplicates. */
const headersFor = (req: SendRequest): Record<string, string> => {
  const headers: Record<string, string> = { "content-type": "application/json", "user-agent": userAgent }
  for (const [name, value] of Object.entries(req.headers)) headers[name.toLowerCase()] = value
  return headers
}

const elapsedSince = (start: number): number => Math.round(performance.now() - start)

/** Resolves, never rejects: every failure becomes a `SendResult`. `controller` aborts the request (an interruption). */
const sendWith = async (agent: Agent, req: SendRequest, controller: AbortController): Promise<SendResult> => {
  const start = performance.now()
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    controller.abort(new Error(`timeout after ${req.timeoutMs} ms`))
  }, req.timeoutMs)
  let status: number | null = null
  let retryAfter: string | null = null
  try {
    const response = await request(req.url, {
      dispatcher: agent,
      method: req.method,
      headers: headersFor(req),
      body: req.body,
      signal: controller.signal,
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs
    })
    status = response.statusCode
    retryAfter = headerValue(response.headers["retry-after"])
    const bytes = await readCapped(response.body)
    return { status, retryAfter, error: null, durationMs: elapsedSince(start), responseExcerpt: excerptOf(bytes) }
  } catch (error) {
    return {
      status,
      retryAfter,
      error: timedOut ? `timeout after ${req.timeoutMs} ms` : describeError(error, req.timeoutMs),
      durationMs: elapsedSince(start),
      responseExcerpt: null
    }
  } finally {
    clearTimeout(timer)
  }
}

const make = Effect.gen(function* () {
  // undici's `request` never follows redirects (that takes its redirect interceptor), so a
  // 3xx comes back as is and is classified, not chased to an address nobody configured.
  const agent = yield* Effect.acquireRelease(
    Effect.sync(() => new Agent({ connections: connectionsPerOrigin, keepAliveTimeout: 4_000 })),
    (agent) => Effect.promise(() => agent.close())
  )
  return HttpSender.of({
    // One abort controller per request, the sender's own: `Effect.promise` with a signal would
    // add a second, and a listener joining the two, to every request.
    send: (req) =>
      Effect.async<SendResult>((resume) => {
        const controller = new AbortController()
        sendWith(agent, req, controller).then(
          (result) => resume(Effect.succeed(result)),
          (defect: unknown) => resume(Effect.die(defect))
        )
        return Effect.sync(() => controller.abort(new Error("interrupted")))
      })
  })
})

/** The real sender: one undici agent for the process, closed when the layer is released. */
export const layer: Layer.Layer<HttpSender> = Layer.scoped(HttpSender, make)
