/**
 * One HTTP request to a destination. Every way it can end — a response, a timeout, a refused
 * or reset connection, an interruption — is a value the actor classifies (`ResponseClass`);
 * nothing here fails or throws, and nothing a receiver does can hold a sender past its timeout
 * or make it read more than a bounded number of bytes.
 *
 * Every connection is checked against the address policy (`AddressPolicy`) where it is made:
 * a literal address before connecting, a name after it is resolved, on every new connection.
 * So a URL checked when it was set cannot reach a private address later by resolving
 * differently (DNS rebinding), and a redirect is never followed anywhere. A refused
 * connection ends the attempt like a refused port: a failure, retried under the retry policy
 * while the destination's health goes down, so a name that resolves to a public address again
 * (or a configuration that allows the address) lets the events through, and otherwise they
 * go `dead` when the policy gives up.
 */
import { Context, Effect, Layer } from "effect"
import { lookup as dnsLookup } from "node:dns"
import type { LookupAddress } from "node:dns"
import type { LookupFunction } from "node:net"
import { Agent, buildConnector, request } from "undici"
import type { Dispatcher } from "undici"
import * as AddressPolicy from "./AddressPolicy.js"
import { BrokerConfig } from "./BrokerConfig.js"
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

/** Name resolution as `net.connect` calls it (`dns.lookup`'s signature). */
export type Lookup = LookupFunction

/** What the sender may connect to. */
export interface SenderOptions {
  /** `SLUICE_ALLOW_PRIVATE_DESTINATIONS`: connect to loopback, private, link-local and other non-public addresses too. */
  readonly allowPrivateDestinations: boolean
  /** Resolves names; `dns.lookup` unless a test stands in for a DNS server. */
  readonly lookup?: Lookup
}

/** A connection the address policy refused; the message says which address and why. */
export class AddressRefused extends Error {
  readonly code = "SLUICE_ADDRESS_REFUSED"
  override readonly name = "AddressRefused"
}

/** The first refusal among the addresses a name resolved to (a name with one non-public address is refused whole). */
const refusalAmong = (host: string, addresses: ReadonlyArray<LookupAddress>, allowPrivate: boolean): string | undefined => {
  for (const { address } of addresses) {
    const refusal = AddressPolicy.refusal(host, address, allowPrivate)
    if (refusal !== undefined) return refusal
  }
  return undefined
}

/** `lookup` that fails with `AddressRefused` when any address the name resolves to is not allowed. */
const guardedLookup =
  (options: SenderOptions): Lookup =>
  (hostname, lookupOptions, callback) => {
    const resolve = options.lookup ?? (dnsLookup as Lookup)
    resolve(hostname, { ...lookupOptions, all: true }, (error, resolved, family) => {
      const addresses: ReadonlyArray<LookupAddress> =
        typeof resolved === "string" ? [{ address: resolved, family: family ?? 4 }] : (resolved ?? [])
      const failure =
        error ??
        (addresses.length === 0
          ? Object.assign(new Error(`${hostname} resolves to no address`), { code: "ENOTFOUND" })
          : undefined)
      const refusal = failure === undefined ? refusalAmong(hostname, addresses, options.allowPrivateDestinations) : undefined
      const failed = failure ?? (refusal === undefined ? undefined : new AddressRefused(refusal))
      if (failed !== undefined) return lookupOptions.all === true ? callback(failed, []) : callback(failed, "")
      if (lookupOptions.all === true) return callback(null, [...addresses])
      callback(null, addresses[0]!.address, addresses[0]!.family)
    })
  }

/**
 * undici's connector with the address policy in front: literal addresses are checked here
 * (`net.connect` does not resolve them), names in the lookup it hands to `net.connect`.
 */
const guardedConnector = (options: SenderOptions): buildConnector.connector => {
  const connect = buildConnector({ lookup: guardedLookup(options) })
  return (connectOptions, callback) => {
    const { hostname } = connectOptions
    if (AddressPolicy.isAddress(hostname)) {
      const refusal = AddressPolicy.refusal(hostname, hostname, options.allowPrivateDestinations)
      if (refusal !== undefined) return callback(new AddressRefused(refusal), null)
    }
    return connect(connectOptions, callback)
  }
}

/** How long a URL's host may take to resolve when the URL is set; past it the sender's check at connection time is what holds. */
const SET_TIME_LOOKUP_MS = 5_000

/**
 * Why a destination may not have `url`, checked when an operator sets it: its literal address,
 * or each address its host resolves to now. Undefined when allowed — and when the name does
 * not resolve (yet): the sender checks every connection anyway, so a refusal here is only the
 * early, clear answer.
 */
export const urlRefusal = (url: string, options: SenderOptions): Effect.Effect<string | undefined> => {
  const host = new URL(url).hostname
  if (AddressPolicy.isAddress(host)) return Effect.succeed(AddressPolicy.refusal(host, host, options.allowPrivateDestinations))
  if (options.allowPrivateDestinations) return Effect.succeed(undefined)
  const resolve = options.lookup ?? (dnsLookup as Lookup)
  return Effect.async<ReadonlyArray<LookupAddress>>((resume) => {
    resolve(host, { all: true }, (error, resolved) =>
      resume(Effect.succeed(error !== null || typeof resolved === "string" ? [] : resolved))
    )
  }).pipe(
    Effect.timeoutTo({ duration: SET_TIME_LOOKUP_MS, onTimeout: () => [], onSuccess: (addresses) => addresses }),
    Effect.map((addresses) => refusalAmong(host, addresses, false))
  )
}

const refusalIn = (error: unknown): AddressRefused | undefined => {
  if (error instanceof AddressRefused) return error
  return typeof error === "object" && error !== null && "cause" in error ? refusalIn(error.cause) : undefined
}

const timeoutCodes = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"])

const describeError = (error: unknown, timeoutMs: number): string => {
  const refused = refusalIn(error)
  if (refused !== undefined) return `address refused: ${refused.message}`
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

const make = (options: SenderOptions) =>
  Effect.gen(function* () {
    // undici's `request` never follows redirects (that takes its redirect interceptor), so a
    // 3xx comes back as is and is classified, not chased to an address nobody configured.
    const agent = yield* Effect.acquireRelease(
      Effect.sync(
        () => new Agent({ connections: connectionsPerOrigin, keepAliveTimeout: 4_000, connect: guardedConnector(options) })
      ),
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

/** A sender with its own undici agent, closed when the layer is released. */
export const layerWith = (options: SenderOptions): Layer.Layer<HttpSender> => Layer.scoped(HttpSender, make(options))

/** The broker's sender: one undici agent for the process, connecting where the broker's settings allow. */
export const layer: Layer.Layer<HttpSender, never, BrokerConfig> = Layer.unwrapEffect(
  Effect.map(BrokerConfig, (settings) => layerWith({ allowPrivateDestinations: settings.allowPrivateDestinations }))
)
