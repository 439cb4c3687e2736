/**
 * Request bodies are hostile until checked: the same checks for HTTP ingest and the admin
 * API — a size cap (413), UTF-8 only, JSON nested no deeper than `MAX_JSON_DEPTH`, strings a
 * database can store — each failure a 400 that names where.
 */
import type { HttpServerRequest } from "@effect/platform"
import { AdminApi } from "@sluice/protocol"
import { Effect, Either, Stream } from "effect"

const invalid = (field: string, detail: string) => new AdminApi.InvalidRequest({ field, message: `${field}: ${detail}` })

/**
 * How much of an oversize body is still read, and dropped, before answering 413: a client
 * that is still sending gets the answer, where closing the connection on it (what the
 * platform's `MaxBodySize` does) shows as a reset connection instead. Beyond this, it is
 * cut off.
 */
const DRAIN_BYTES = 16 * 1024 * 1024

/**
 * The deepest nesting of JSON objects and arrays a request may have (an ingested event counts
 * from its own object). Real payloads stay far below; what goes deeper is a nesting bomb,
 * whose recursive processing further on (schema decoding, `JSON.stringify`) would overflow
 * the stack and answer 500.
 */
export const MAX_JSON_DEPTH = 64

/**
 * The body's bytes, or `tooLarge` when there are more than `maxBytes`. A body that cannot be
 * read (the client went away mid-way) is a 400 naming the body.
 */
export const readBytes = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number,
  tooLarge: AdminApi.PayloadTooLarge
): Effect.Effect<Buffer, AdminApi.InvalidRequest | AdminApi.PayloadTooLarge> => {
  if (Number(request.headers["content-length"] ?? 0) > maxBytes + DRAIN_BYTES) return Effect.fail(tooLarge)
  return request.stream.pipe(
    Stream.runFoldWhile(
      { bytes: 0, kept: [] as Array<Uint8Array> },
      (read) => read.bytes <= maxBytes + DRAIN_BYTES,
      (read, chunk) => {
        const bytes = read.bytes + chunk.length
        if (bytes <= maxBytes) read.kept.push(chunk)
        return { bytes, kept: read.kept }
      }
    ),
    Effect.mapError((error) => invalid("(body)", `cannot be read: ${error.message}`)),
    Effect.flatMap((read) => (read.bytes > maxBytes ? Effect.fail(tooLarge) : Effect.succeed(Buffer.concat(read.kept))))
  )
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * How many continuation bytes follow a lead byte, and the range the first of them must be in
 * (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF); undefined for a byte
 * that cannot start a character.
 */
const sequenceOf = (lead: number): readonly [number, number, number] | undefined => {
  if (lead < 0x80) return [0, 0, 0]
  if (lead >= 0xc2 && lead <= 0xdf) return [1, 0x80, 0xbf]
  if (lead === 0xe0) return [2, 0xa0, 0xbf]
  if (lead === 0xed) return [2, 0x80, 0x9f]
  if (lead >= 0xe1 && lead <= 0xef) return [2, 0x80, 0xbf]
  if (lead === 0xf0) return [3, 0x90, 0xbf]
  if (lead >= 0xf1 && lead <= 0xf3) return [3, 0x80, 0xbf]
  if (lead === 0xf4) return [3, 0x80, 0x8f]
  return undefined
}

/** Where the first byte sequence that is not UTF-8 starts; only asked once the decoder refused the bytes. */
const firstInvalidUtf8 = (bytes: Uint8Array): number => {
  let i = 0
  while (i < bytes.length) {
    const sequence = sequenceOf(bytes[i]!)
    if (sequence === undefined) return i
    const [count, low, high] = sequence
    if (i + count >= bytes.length) return i
    for (let k = 1; k <= count; k++) {
      const next = bytes[i + k]!
      if (k === 1 ? next < low || next > high : next < 0x80 || next > 0xbf) return i
    }
    i += count + 1
  }
  return i
}

/** The bytes as text; a 400 naming the offending byte when they are not UTF-8 (JSON's only encoding, RFC 8259). */
export const decodeUtf8 = (bytes: Uint8Array): Either.Either<string, AdminApi.InvalidRequest> => {
  try {
    return Either.right(strictUtf8.decode(bytes))
  } catch {
    return Either.left(invalid("(body)", `is not UTF-8 (invalid byte sequence at byte ${firstInvalidUtf8(bytes)})`))
  }
}

/** `text` parsed as JSON, or a 400 naming the body with the parser's reason. */
export const parseJson = (text: string): Either.Either<unknown, AdminApi.InvalidRequest> => {
  try {
    return Either.right(JSON.parse(text) as unknown)
  } catch (error) {
    return Either.left(invalid("(body)", `must be JSON: ${(error as Error).message}`))
  }
}

/** An unpaired UTF-16 surrogate (`"\ud800"` is valid JSON, but no Unicode text). */
const unpairedSurrogate = /\p{Surrogate}/u

/** What is wrong with a string of the request, if anything: Postgres cannot store either. */
const badText = (text: string): string | undefined =>
  text.includes("\u0000")
    ? "must not contain U+0000 (NUL)"
    : unpairedSurrogate.test(text)
      ? "holds an unpaired surrogate (\\ud800-\\udfff without its other half), which is not Unicode text"
      : undefined

interface Node {
  readonly value: unknown
  readonly key: string | undefined
  readonly parent: Node | undefined
  readonly depth: number
}

const pathOf = (node: Node, key?: string): string => {
  const keys: Array<string> = key === undefined ? [] : [key]
  for (let at: Node | undefined = node; at !== undefined; at = at.parent) if (at.key !== undefined) keys.push(at.key)
  return keys.length === 0 ? "(body)" : keys.reverse().join(".")
}

/**
 * Checks a parsed JSON value before anything else walks it: nesting no deeper than
 * `MAX_JSON_DEPTH` (the value itself is level 1), and every string and property name text a
 * database can store. Iterative, so a nesting bomb cannot overflow the stack here either.
 * The error names the path (`events.1.data.a.a…`, prefixed with `at`).
 */
export const checkJson = (value: unknown, at: ReadonlyArray<string> = []): AdminApi.InvalidRequest | undefined => {
  const root = at.reduce<Node | undefined>((parent, key) => ({ value: undefined, key, parent, depth: 0 }), undefined)
  const stack: Array<Node> = [{ value, key: undefined, parent: root, depth: 1 }]
  while (stack.length > 0) {
    const node = stack.pop()!
    const { depth, value: current } = node
    if (typeof current === "string") {
      const problem = badText(current)
      if (problem !== undefined) return invalid(pathOf(node), problem)
      continue
    }
    if (typeof current !== "object" || current === null) continue
    if (depth > MAX_JSON_DEPTH) return invalid(pathOf(node), `is nested deeper than ${MAX_JSON_DEPTH} levels of objects and arrays`)
    if (Array.isArray(current)) {
      for (let i = current.length - 1; i >= 0; i--) stack.push({ value: current[i], key: String(i), parent: node, depth: depth + 1 })
      continue
    }
    const keys = Object.keys(current)
    for (const key of keys) {
      const problem = badText(key)
      if (problem !== undefined) return invalid(pathOf(node, key), `property name ${problem}`)
    }
    for (let i = keys.length - 1; i >= 0; i--) {
      stack.push({ value: (current as Record<string, unknown>)[keys[i]!], key: keys[i]!, parent: node, depth: depth + 1 })
    }
  }
  return undefined
}

