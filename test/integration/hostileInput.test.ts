/**
 * Input from outside treated as hostile, against a real broker (nats-server, Postgres, HTTP):
 * malformed JSON, wrong types, unknown fields, oversize bodies, nesting bombs, invalid UTF-8
 * and text Postgres cannot store, at HTTP ingest and the admin API — each a 4xx naming the
 * problem, nothing of a refused batch stored, and the broker (history included) working on
 * afterwards. Then destination addresses: loopback, private, link-local, metadata and other
 * non-public addresses refused when a URL is set (literal, odd IPv4 spellings, IPv4 inside
 * IPv6, names resolving to them) and again when the sender connects (a URL stored while
 * allowed, a name resolving differently later), and redirects not followed.
 */
import { describe, expect, layer } from "@effect/vitest"
import { HttpSender } from "@sluice/broker"
import { Subjects } from "@sluice/protocol"
import { Effect, Exit, Scope } from "effect"
import type { LookupAddress } from "node:dns"
import { producer, startBroker, TEST_ADMIN_TOKEN, TEST_PRODUCER_TOKEN } from "../helpers/broker.js"
import { withJsm } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

interface Answer {
  readonly status: number
  readonly json: { readonly _tag?: string; readonly field?: string; readonly message?: string; readonly [key: string]: unknown }
}

/** One request sent as a hostile client would send it: any bytes, any headers. */
const send = (
  url: string,
  init: { readonly method?: string; readonly body?: string | Uint8Array | ReadableStream<Uint8Array>; readonly headers?: Record<string, string> }
): Effect.Effect<Answer> =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: init.method ?? "POST",
      headers: init.headers,
      body: init.body,
      ...(init.body instanceof ReadableStream ? { duplex: "half" } : {})
    } as RequestInit)
    const text = await response.text()
    let json: Answer["json"]
    try {
      json = JSON.parse(text) as Answer["json"]
    } catch {
      json = { text }
    }
    return { status: response.status, json }
  })

const jsonHeaders = (token: string) => ({ "content-type": "application/json", authorization: `Bearer ${token}` })

const ingest = (adminUrl: string, body: string | Uint8Array | ReadableStream<Uint8Array>) =>
  send(`${adminUrl}/api/v1/events`, { body, headers: jsonHeaders(TEST_PRODUCER_TOKEN) })

const admin = (adminUrl: string, method: string, path: string, body: string | Uint8Array | ReadableStream<Uint8Array>) =>
  send(`${adminUrl}/api/v1${path}`, { method, body, headers: jsonHeaders(TEST_ADMIN_TOKEN) })

/** How many messages SLUICE_EVENTS holds for an event type. */
const storedOfType = (natsUrl: string, type: string) =>
  withJsm(natsUrl, async (jsm) => {
    const subject = Subjects.eventSubject(type)
    const info = await jsm.streams.info(Subjects.EVENTS_STREAM, { subjects_filter: subject })
    return info.state.subjects?.[subject] ?? 0
  })

/** `depth` nested arrays around `inner`. */
const nestedArrays = (depth: number, inner = "1") => `${"[".repeat(depth)}${inner}${"]".repeat(depth)}`
/** `depth` nested objects `{"a":…}` around `inner`. */
const nestedObjects = (depth: number, inner = "1") => `${'{"a":'.repeat(depth)}${inner}${"}".repeat(depth)}`

const bytes = (...parts: ReadonlyArray<string | ReadonlyArray<number>>): Uint8Array =>
  Buffer.concat(parts.map((part) => (typeof part === "string" ? Buffer.from(part, "utf8") : Buffer.from(part))))

/** A body sent in chunks without a Content-Length. */
const chunked = (chunks: ReadonlyArray<string>) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk))
      controller.close()
    }
  })

const MAX_DEPTH = 64

layer(NatsFixture.layer, { timeout: 120_000, excludeTestServices: true })("hostile input", (it) => {
  /** A broker on the file's NATS with a fresh Postgres; ingest bodies up to 64 KiB, events up to 16 KiB. */
  const broker = (settings: Parameters<typeof startBroker>[0]["settings"] = {}) =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const databaseUrl = yield* throwawayDatabase
      const started = yield* startBroker({
        natsUrl: nats.url,
        databaseUrl,
        settings: { maxIngestBytes: 64 * 1024, maxEventBytes: 16 * 1024, ...settings }
      })
      return { ...started, natsUrl: nats.url, databaseUrl }
    })

  describe("HTTP ingest", () => {
    it.scoped("answers 400 naming the problem for malformed JSON, wrong types and unknown fields", () =>
      Effect.gen(function* () {
        const { adminUrl, natsUrl } = yield* broker()
        const cases: ReadonlyArray<readonly [string, string, RegExp]> = [
          ["{", "(body)", /^\(body\): must be JSON: /],
          ['{"type":"hostile.malformed",', "(body)", /must be JSON/],
          ['{"type":"hostile.malformed"} trailing', "(body)", /must be JSON/],
          ["", "(body)", /must be JSON/],
          ["null", "(body)", /one event object/],
          ['"an event"', "(body)", /one event object/],
          ["[]", "(body)", /one event object/],
          ['{"type":5}', "type", /^type: Expected string, actual 5$/],
          ['{"type":"hostile.types","key":{}}', "key", /^key: /],
          ['{"type":"hostile.types","version":"yesterday"}', "version", /RFC 3339/],
          ['{"type":"hostile.types","headers":{"x-a":1}}', "headers.x-a", /^headers\.x-a: /],
          ['{"type":"hostile.types","supersedes":"yes"}', "supersedes", /boolean/],
          ['{"events":"hostile.types"}', "events", /array/],
          ['{"events":[{"type":"hostile.types"},{"type":"hostile.types","key":7}]}', "events.1.key", /^events\.1\.key: /],
          ['{"type":"hostile.unknown","colour":"red"}', "colour", /^colour: is unexpected/],
          ['{"events":[{"type":"hostile.unknown"}],"colour":"red"}', "colour", /a batch holds only "events"/],
          ['{"events":[{"type":"hostile.unknown","data":{},"__proto__":{}}]}', "events.0.__proto__", /is unexpected/]
        ]
        for (const [body, field, message] of cases) {
          const answer = yield* ingest(adminUrl, body)
          expect(answer.status, body).toBe(400)
          expect(answer.json, body).toMatchObject({ _tag: "InvalidRequest", field })
          expect(answer.json.message, body).toMatch(message)
        }
        for (const type of ["hostile.malformed", "hostile.types", "hostile.unknown"]) {
          expect(yield* storedOfType(natsUrl, type)).toBe(0)
        }
      })
    )

    it.scoped(`refuses JSON nested deeper than ${MAX_DEPTH} levels, naming the path, and survives a nesting bomb`, () =>
      Effect.gen(function* () {
        const { adminUrl, natsUrl } = yield* broker({ maxIngestBytes: 4 * 1024 * 1024, maxEventBytes: 4 * 1024 * 1024 })

        // The event object is level 1: data may hold 63 more levels.
        const deepest = yield* ingest(adminUrl, `{"type":"hostile.depth","data":${nestedArrays(MAX_DEPTH - 1)}}`)
        expect(deepest.status).toBe(201)

        const tooDeep = yield* ingest(adminUrl, `{"type":"hostile.depth","data":${nestedArrays(MAX_DEPTH)}}`)
        expect(tooDeep.status).toBe(400)
        expect(tooDeep.json).toMatchObject({ _tag: "InvalidRequest", field: `data${".0".repeat(MAX_DEPTH - 1)}` })
        expect(tooDeep.json.message).toContain(`nested deeper than ${MAX_DEPTH} levels`)

        const objects = yield* ingest(adminUrl, `{"type":"hostile.depth","data":${nestedObjects(200)}}`)
        expect(objects.status).toBe(400)
        expect(objects.json.field).toBe(`data${".a".repeat(MAX_DEPTH - 1)}`)

        const inBatch = yield* ingest(
          adminUrl,
          `{"events":[{"type":"hostile.depth","data":1},{"type":"hostile.depth","data":${nestedObjects(MAX_DEPTH)}}]}`
        )
        expect(inBatch.status).toBe(400)
        expect(inBatch.json.field).toBe(`events.1.data${".a".repeat(MAX_DEPTH - 1)}`)

        // A million open brackets: a 400, not a stack overflow.
        const bomb = yield* ingest(adminUrl, `{"type":"hostile.depth","data":${nestedArrays(1_000_000)}}`)
        expect(bomb.status).toBe(400)
        expect(bomb.json.message).toContain(`nested deeper than ${MAX_DEPTH} levels`)
        const bare = yield* ingest(adminUrl, nestedArrays(1_000_000))
        expect(bare.status).toBe(400)

        expect(yield* storedOfType(natsUrl, "hostile.depth")).toBe(1)
        expect((yield* ingest(adminUrl, '{"type":"hostile.depth.after"}')).status).toBe(201)
      })
    )

    it.scoped("refuses bodies that are not UTF-8, and strings Postgres cannot store, naming where", () =>
      Effect.gen(function* () {
        const { adminUrl, natsUrl } = yield* broker()
        const start = '{"type":"hostile.utf8","data":"'
        const notUtf8: ReadonlyArray<readonly [string, string, ReadonlyArray<number>]> = [
          ["a lone 0xff", start, [0xff]],
          ["an overlong '/'", start, [0xc0, 0xaf]],
          ["an encoded surrogate", start, [0xed, 0xa0, 0x80]],
          ["a cut-off character", `${start}é`, [0xe2, 0x82]],
          ["Latin-1", `${start}caf`, [0xe9]]
        ]
        for (const [what, before, bad] of notUtf8) {
          const answer = yield* ingest(adminUrl, bytes(before, bad, '"}'))
          expect(answer.status, what).toBe(400)
          expect(answer.json, what).toMatchObject({ _tag: "InvalidRequest", field: "(body)" })
          expect(answer.json.message, what).toBe(`(body): is not UTF-8 (invalid byte sequence at byte ${Buffer.byteLength(before)})`)
        }

        // Valid JSON and valid UTF-8, but not text a database (or most receivers) can hold.
        const unstorable: ReadonlyArray<readonly [string, string, RegExp]> = [
          ['{"type":"hostile.text","data":{"note":"a\\u0000b"}}', "data.note", /U\+0000/],
          ['{"type":"hostile.text","key":"k\\u0000"}', "key", /U\+0000/],
          ['{"type":"hostile.text","data":{"a\\u0000":1}}', "data.a\u0000", /U\+0000/],
          ['{"type":"hostile.text","data":["\\ud800"]}', "data.0", /unpaired surrogate/],
          ['{"type":"hostile.text","data":"\\udc00x"}', "data", /unpaired surrogate/],
          ['{"events":[{"type":"hostile.text"},{"type":"hostile.text","idempotencyKey":"\\u0000"}]}', "events.1.idempotencyKey", /U\+0000/]
        ]
        for (const [body, field, message] of unstorable) {
          const answer = yield* ingest(adminUrl, body)
          expect(answer.status, body).toBe(400)
          expect(answer.json, body).toMatchObject({ _tag: "InvalidRequest", field })
          expect(answer.json.message, body).toMatch(message)
        }
        // A surrogate pair is one character, not two halves.
        const pair = yield* ingest(adminUrl, '{"type":"hostile.text.ok","data":"\\ud83d\\ude00 and 😀"}')
        expect(pair.status).toBe(201)

        expect(yield* storedOfType(natsUrl, "hostile.utf8")).toBe(0)
        expect(yield* storedOfType(natsUrl, "hostile.text")).toBe(0)
      })
    )

    it.scoped("answers 413 for oversize bodies, with or without Content-Length, and stores nothing of them", () =>
      Effect.gen(function* () {
        const { adminUrl, natsUrl } = yield* broker()
        const big = yield* ingest(adminUrl, JSON.stringify({ type: "hostile.size", data: "x".repeat(100 * 1024) }))
        expect(big.status).toBe(413)
        expect(big.json).toMatchObject({ _tag: "PayloadTooLarge", maxBytes: 64 * 1024 })
        expect(big.json.message).toContain("SLUICE_MAX_INGEST_BYTES")

        const streamed = yield* ingest(
          adminUrl,
          chunked(['{"type":"hostile.size","data":[', ...Array.from({ length: 20 }, () => `"${"y".repeat(8 * 1024)}",`), '""]}'])
        )
        expect(streamed.status).toBe(413)

        const oneTooBig = yield* ingest(
          adminUrl,
          JSON.stringify({ events: [{ type: "hostile.size", data: 1 }, { type: "hostile.size", data: "z".repeat(20 * 1024) }] })
        )
        expect(oneTooBig.status).toBe(413)
        expect(oneTooBig.json.message).toContain("SLUICE_MAX_EVENT_BYTES")
        expect(yield* storedOfType(natsUrl, "hostile.size")).toBe(0)
      })
    )

    it.scoped("stores nothing of a batch with one bad event, then takes good ones and records them", () =>
      Effect.gen(function* () {
        const { adminUrl, client, natsUrl } = yield* broker()
        const good = (n: number) => `{"id":"hostile-batch-${n}","type":"hostile.batch","data":{"n":${n}}}`
        for (const bad of [
          `{"type":"hostile.batch","data":${nestedArrays(100)}}`,
          '{"type":"hostile.batch","data":"\\u0000"}',
          '{"type":"hostile.batch","version":-1}',
          '{"type":"hostile.batch","colour":1}'
        ]) {
          const answer = yield* ingest(adminUrl, `{"events":[${good(1)},${good(2)},${bad}]}`)
          expect(answer.status, bad).toBe(400)
          expect(answer.json.field, bad).toMatch(/^events\.2(\.|$)/)
        }
        expect(yield* storedOfType(natsUrl, "hostile.batch")).toBe(0)

        const accepted = yield* ingest(adminUrl, `{"events":[${good(1)},${good(2)}]}`)
        expect(accepted.status).toBe(201)
        for (const id of ["hostile-batch-1", "hostile-batch-2"]) {
          yield* waitForEffect(client.events.get({ path: { id } }), { description: `${id} in the history` })
        }
      })
    )

    it.scoped("an event the SDK published with NUL and unpaired surrogates does not stop the history", () =>
      Effect.gen(function* () {
        const { client, natsUrl } = yield* broker()
        const sluice = yield* producer(natsUrl)
        // Past ingest's checks: the SDK validates the envelope, not what Postgres can hold.
        yield* sluice.publish({ id: "hostile-nul", type: "hostile.sdk", key: "key\u0000", data: { note: "a\u0000b", half: "\ud800" } })
        yield* sluice.publish({ id: "hostile-after", type: "hostile.sdk", data: { n: 1 } })
        const recorded = yield* waitForEffect(client.events.get({ path: { id: "hostile-nul" } }), {
          description: "the event with NUL in the history"
        })
        expect(recorded.event.key).toBe("key\uFFFD")
        expect(recorded.event.data).toEqual({ note: "a\uFFFDb", half: "\uFFFD" })
        yield* waitForEffect(client.events.get({ path: { id: "hostile-after" } }), { description: "the next event in the history" })
      })
    )
  })

  describe("admin API", () => {
    it.scoped("answers 400 naming the problem for malformed JSON, wrong types, unknown fields and bad text; stores nothing", () =>
      Effect.gen(function* () {
        const { adminUrl, client } = yield* broker()
        const create = (body: string | Uint8Array) => admin(adminUrl, "POST", "/destinations", body)
        const valid = { id: "hostile-admin", url: "http://127.0.0.1:9/hook", subscriptions: ["hostile.>"] as const }
        const withField = (fields: Record<string, unknown>) => JSON.stringify({ ...valid, ...fields })

        const malformed = yield* create("{")
        expect(malformed.status).toBe(400)
        expect(malformed.json).toMatchObject({ _tag: "InvalidRequest", field: "(body)" })
        expect(malformed.json.message).toMatch(/^\(body\): must be JSON: /)

        // Schema failures: one line per problem, each starting with the field's path.
        const schemaCases: ReadonlyArray<readonly [string, ReadonlyArray<string | number>, RegExp]> = [
          [withField({ url: 5 }), ["url"], /^url: Expected string, actual 5$/],
          [withField({ url: "ftp://example.com/" }), ["url"], /^url: must be an absolute http\(s\) URL/],
          [withField({ maxConcurrency: "many" }), ["maxConcurrency"], /^maxConcurrency: /],
          [withField({ colour: "red" }), ["colour"], /^colour: is unexpected/],
          [withField({ retry: { colour: 1 } }), ["retry", "colour"], /^retry\.colour: is unexpected/],
          [withField({ subscriptions: [] }), ["subscriptions", 0], /^subscriptions\.0: is missing$/],
          [withField({ name: "n".repeat(100_000) }), ["name"], /^name: Expected a string at most 200 character\(s\) long, actual "n+…$/],
          ["[]", [], /^\(body\): Expected/]
        ]
        for (const [body, path, message] of schemaCases) {
          const answer = yield* create(body)
          expect(answer.status, body.slice(0, 80)).toBe(400)
          expect(answer.json._tag, body.slice(0, 80)).toBe("HttpApiDecodeError")
          expect((answer.json.issues as Array<{ path: Array<string> }>)[0]?.path, body.slice(0, 80)).toEqual(path)
          expect(answer.json.message, body.slice(0, 80)).toMatch(message)
          expect(answer.json.message!.length, body.slice(0, 80)).toBeLessThan(2_000)
        }

        const textCases: ReadonlyArray<readonly [string | Uint8Array, string, RegExp]> = [
          [bytes('{"id":"hostile-admin","url":"http://127.0.0.1:9/","subscriptions":["', [0xff], '"]}'), "(body)", /^\(body\): is not UTF-8 \(invalid byte sequence at byte 68\)$/],
          [withField({ name: "a\u0000b" }), "name", /U\+0000/],
          [withField({ name: "\udfff" }), "name", /unpaired surrogate/],
          [`{"id":"hostile-admin","url":"http://127.0.0.1:9/","subscriptions":["hostile.>"],"retry":${nestedObjects(100)}}`, `retry${".a".repeat(MAX_DEPTH - 1)}`, /nested deeper than 64 levels/],
          [nestedArrays(400_000), `${"0.".repeat(MAX_DEPTH - 1)}0`, /nested deeper than 64 levels/]
        ]
        for (const [body, field, message] of textCases) {
          const answer = yield* create(body)
          expect(answer.status, field).toBe(400)
          expect(answer.json, field).toMatchObject({ _tag: "InvalidRequest", field })
          expect(answer.json.message, field).toMatch(message)
        }

        // The same for a change: refused whole, nothing of it applied.
        yield* client.destinations.create({ payload: valid })
        for (const body of ['{"name":', JSON.stringify({ name: "renamed", maxConcurrency: 0 }), JSON.stringify({ name: "renamed", colour: 1 })]) {
          const answer = yield* admin(adminUrl, "PATCH", "/destinations/hostile-admin", body)
          expect(answer.status, body).toBe(400)
        }
        const after = yield* client.destinations.get({ path: { id: "hostile-admin" } })
        expect(after.name).toBe("hostile-admin")
        expect(after.maxConcurrency).toBe(10)
        expect((yield* client.destinations.list()).map((d) => d.id)).toEqual(["hostile-admin"])

        // Other endpoints with bodies get the same checks.
        const disable = yield* admin(adminUrl, "POST", "/destinations/hostile-admin/disable", bytes('{"reason":"', [0xc3], '"}'))
        expect(disable.json).toMatchObject({ _tag: "InvalidRequest", field: "(body)" })
        const replay = yield* admin(adminUrl, "POST", "/destinations/hostile-admin/replay", '{"since":')
        expect(replay.json).toMatchObject({ _tag: "InvalidRequest", field: "(body)" })
        expect((yield* client.destinations.get({ path: { id: "hostile-admin" } })).health.state).toBe("active")

        // The token is checked before the body is read.
        const anonymous = yield* send(`${adminUrl}/api/v1/destinations`, { body: nestedArrays(1_000), headers: { "content-type": "application/json" } })
        expect(anonymous.status).toBe(401)
      })
    )

    it.scoped("answers 413 for an admin request body over 1 MiB, with or without Content-Length", () =>
      Effect.gen(function* () {
        const { adminUrl, client } = yield* broker()
        const huge = JSON.stringify({ url: "http://127.0.0.1:9/", subscriptions: ["hostile.>"], name: "n".repeat(2 * 1024 * 1024) })
        const answer = yield* admin(adminUrl, "POST", "/destinations", huge)
        expect(answer.status).toBe(413)
        expect(answer.json).toMatchObject({ _tag: "PayloadTooLarge", maxBytes: 1024 * 1024 })
        const streamed = yield* admin(adminUrl, "POST", "/destinations", chunked([huge.slice(0, 1_500_000), huge.slice(1_500_000)]))
        expect(streamed.status).toBe(413)
        expect(yield* client.destinations.list()).toEqual([])
      })
    )

    it.scoped("answers 400, not 503, for query parameters the history database cannot hold", () =>
      Effect.gen(function* () {
        const { adminUrl } = yield* broker()
        for (const [path, field] of [
          ["/events?key=a%00b", "key"],
          ["/events?destination=%00", "destination"],
          ["/audit?destination=x%00", "destination"]
        ] as const) {
          const answer = yield* send(`${adminUrl}/api/v1${path}`, { method: "GET", headers: jsonHeaders(TEST_ADMIN_TOKEN) })
          expect(answer.status, path).toBe(400)
          expect(answer.json, path).toMatchObject({ _tag: "InvalidRequest", field })
        }
      })
    )
  })

  describe("destination addresses", () => {
    const refusedUrls = [
      "http://127.0.0.1:9/hook",
      "http://127.1/hook", // 127.0.0.1, as URL parsing spells it
      "http://2130706433/hook", // 127.0.0.1 as one number
      "http://0x7f.0.0.1/hook",
      "http://localhost:9/hook", // a name resolving to loopback
      "http://[::1]:9/hook",
      "http://0.0.0.0/hook",
      "http://[::]/hook",
      "http://10.1.2.3/hook",
      "http://172.16.5.4/hook",
      "http://192.168.0.10/hook",
      "http://100.64.1.1/hook",
      "http://169.254.169.254/latest/meta-data/",
      "http://[fd00:ec2::254]/latest/meta-data/",
      "http://[fe80::1]/hook",
      "http://[fc00::5]/hook",
      "http://[::ffff:127.0.0.1]/hook",
      "http://[::ffff:a9fe:a9fe]/hook",
      "http://[64:ff9b::a9fe:a9fe]/hook",
      "https://[2002:a9fe:a9fe::]/hook"
    ]

    it.scoped("refuses URLs on non-public addresses when a destination is created or changed, naming url", () =>
      Effect.gen(function* () {
        const { client } = yield* broker({ allowPrivateDestinations: false })
        for (const [i, url] of refusedUrls.entries()) {
          const refused = yield* Effect.flip(
            client.destinations.create({ payload: { id: `hostile-addr-${i}`, url, subscriptions: ["hostile.addr"] } })
          )
          expect(refused, url).toMatchObject({ _tag: "InvalidRequest", field: "url" })
          expect((refused as { message: string }).message, url).toMatch(
            /^url: .* is an? [A-Za-z -]+ address \(.+\); .*SLUICE_ALLOW_PRIVATE_DESTINATIONS=true$/
          )
        }
        const localhost = yield* Effect.flip(
          client.destinations.create({ payload: { url: "http://localhost:9/", subscriptions: ["hostile.addr"] } })
        )
        expect((localhost as { message: string }).message).toMatch(/^url: localhost resolves to (127\.0\.0\.1|::1), which is a loopback address/)
        expect(yield* client.destinations.list()).toEqual([])

        // Public addresses, and names that do not resolve (yet), are taken; the sender checks again.
        const publicOne = yield* client.destinations.create({
          payload: { id: "hostile-public", url: "http://93.184.215.14/hook", subscriptions: ["hostile.never"] }
        })
        expect(publicOne.url).toBe("http://93.184.215.14/hook")
        yield* client.destinations.create({ payload: { id: "hostile-unresolved", url: "https://sluice-test.invalid/hook", subscriptions: ["hostile.never"] } })

        const moved = yield* Effect.flip(
          client.destinations.update({ path: { id: "hostile-public" }, payload: { url: "http://[::ffff:10.0.0.1]/hook", name: "moved" } })
        )
        expect(moved).toMatchObject({ _tag: "InvalidRequest", field: "url" })
        expect(yield* client.destinations.get({ path: { id: "hostile-public" } })).toMatchObject({
          url: "http://93.184.215.14/hook",
          name: "hostile-public"
        })
        expect((yield* client.destinations.update({ path: { id: "hostile-public" }, payload: { name: "renamed" } })).name).toBe("renamed")
      })
    )

    it.scoped("takes private addresses when SLUICE_ALLOW_PRIVATE_DESTINATIONS is set, and refuses to send to them once it is not", () =>
      Effect.gen(function* () {
        const nats = yield* NatsFixture
        const databaseUrl = yield* throwawayDatabase
        const receiver = yield* scopedReceiver()
        const options = { natsUrl: nats.url, databaseUrl }

        const allowing = yield* Scope.make()
        const first = yield* startBroker({ ...options, settings: { allowPrivateDestinations: true } }).pipe(Scope.extend(allowing))
        yield* first.client.destinations.create({
          payload: { id: "hostile-turned-off", url: `${receiver.url}/hook`, subscriptions: ["hostile.sent"] }
        })
        yield* Scope.close(allowing, Exit.void)

        const { client } = yield* startBroker({ ...options, settings: { allowPrivateDestinations: false } })
        const sluice = yield* producer(nats.url)
        yield* sluice.publish({ id: "hostile-sent-1", type: "hostile.sent", data: {} })
        const attempt = yield* waitForEffect(
          client.events.get({ path: { id: "hostile-sent-1" } }).pipe(Effect.map((detail) => detail.deliveries[0]?.attemptLog[0])),
          { description: "the refused attempt in the history", timeoutMs: 20_000 }
        )
        expect(attempt).toMatchObject({ outcome: "failure", statusCode: null })
        expect(attempt.error).toMatch(/^address refused: 127\.0\.0\.1 is a loopback address .*SLUICE_ALLOW_PRIVATE_DESTINATIONS=true$/)
        expect(receiver.received()).toEqual([])
      })
    )

    it.scoped("the sender checks what a name resolves to when it connects, so a name turned private is refused", () =>
      Effect.gen(function* () {
        const receiver = yield* scopedReceiver()
        /** A resolver as DNS rebinding makes it: the name now points at the receiver on loopback. */
        const rebound: HttpSender.Lookup = (_hostname, options, callback) => {
          const addresses: Array<LookupAddress> = [{ address: "127.0.0.1", family: 4 }]
          if (options.all === true) callback(null, addresses)
          else callback(null, addresses[0]!.address, 4)
        }
        const mixed: HttpSender.Lookup = (_hostname, options, callback) => {
          const addresses: Array<LookupAddress> = [
            { address: "93.184.215.14", family: 4 },
            { address: "127.0.0.1", family: 4 }
          ]
          if (options.all === true) callback(null, addresses)
          else callback(null, addresses[1]!.address, 4)
        }
        const sendWith = (options: HttpSender.SenderOptions, url: string) =>
          HttpSender.HttpSender.pipe(
            Effect.flatMap((sender) => sender.send({ url, method: "POST", headers: {}, body: "{}", timeoutMs: 5_000 })),
            Effect.provide(HttpSender.layerWith(options))
          )

        const viaName = `http://rebound.sluice.test:${receiver.port}/hook`
        const refused = yield* sendWith({ allowPrivateDestinations: false, lookup: rebound }, viaName)
        expect(refused).toMatchObject({ status: null, responseExcerpt: null })
        expect(refused.error).toMatch(/^address refused: rebound\.sluice\.test resolves to 127\.0\.0\.1, which is a loopback address/)
        const half = yield* sendWith({ allowPrivateDestinations: false, lookup: mixed }, viaName)
        expect(half.error).toMatch(/^address refused: rebound\.sluice\.test resolves to 127\.0\.0\.1/)
        const literal = yield* sendWith({ allowPrivateDestinations: false }, `http://[::ffff:127.0.0.1]:${receiver.port}/hook`)
        expect(literal.error).toMatch(/^address refused: ::ffff:7f00:1 is a loopback address/) // as URL parsing writes ::ffff:127.0.0.1
        const realName = yield* sendWith({ allowPrivateDestinations: false }, `http://localhost:${receiver.port}/hook`)
        expect(realName.error).toMatch(/^address refused: localhost resolves to/)
        expect(receiver.received()).toEqual([])

        // Allowed, the same resolver is what the connection uses.
        const allowed = yield* sendWith({ allowPrivateDestinations: true, lookup: rebound }, viaName)
        expect(allowed).toMatchObject({ status: 200, error: null })
        expect(receiver.received().map((r) => r.headers.host)).toEqual([`rebound.sluice.test:${receiver.port}`])
      })
    )

    it.scoped("does not follow redirects: a 3xx is a rejected attempt and its Location is never asked", () =>
      Effect.gen(function* () {
        const { client } = yield* broker({ allowPrivateDestinations: true })
        const target = yield* scopedReceiver()
        const redirecting = yield* scopedReceiver((request) => ({
          status: request.path === "/moved" ? 301 : 307,
          headers: { location: request.path === "/moved" ? "http://169.254.169.254/latest/meta-data/" : `${target.url}/elsewhere` }
        }))
        yield* client.destinations.create({ payload: { id: "hostile-redirect", url: `${redirecting.url}/hook`, subscriptions: ["hostile.redirect"] } })
        yield* client.destinations.create({ payload: { id: "hostile-moved", url: `${redirecting.url}/moved`, subscriptions: ["hostile.redirect"] } })
        const sluice = yield* producer((yield* NatsFixture).url)
        yield* sluice.publish({ id: "hostile-redirected", type: "hostile.redirect", data: {} })
        const deliveries = yield* waitForEffect(
          client.events.get({ path: { id: "hostile-redirected" } }).pipe(
            Effect.map((detail) => (detail.deliveries.length === 2 && detail.deliveries.every((d) => d.state === "dead") ? detail.deliveries : undefined))
          ),
          { description: "both deliveries dead after one rejected attempt" }
        )
        for (const delivery of deliveries) {
          expect(delivery.attemptLog).toHaveLength(1)
          expect(delivery.attemptLog[0]).toMatchObject({ outcome: "rejected", error: expect.stringContaining("redirects are not followed") })
        }
        expect(deliveries.map((d) => d.attemptLog[0]!.statusCode).sort()).toEqual([301, 307])
        expect(redirecting.received()).toHaveLength(2)
        expect(target.received()).toEqual([])
      })
    )
  })
})
