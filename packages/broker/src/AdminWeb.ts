/**
 * The admin web app on the admin address, beside the API: the built app's files, its
 * `index.html` for every page path (the app routes in the browser), and, when the app is
 * not built, a page saying how to build it (status 404) instead of an error.
 */
import { FileSystem, HttpApiBuilder, HttpServerRequest, HttpServerResponse, Path } from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"

/** Vite writes content-hashed names under `assets/`: a new build means new names, so they never go stale. */
const IMMUTABLE = "public, max-age=31536000, immutable"
/** Everything else (above all `index.html`, which names the current assets) is revalidated on each use. */
const REVALIDATE = "no-cache"

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

const notBuilt = (dir: string) =>
  HttpServerResponse.text(
    `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sluice</title></head>
<body>
  <h1>Sluice</h1>
  <p>The admin web app is not built: there is no <code>index.html</code> in <code>${escapeHtml(dir)}</code>.</p>
  <p>Build it with <code>pnpm --filter @sluice/admin-web build</code> (or point <code>SLUICE_ADMIN_WEB_DIR</code> at a build), then reload this page.</p>
  <p>The admin API is at <a href="/api/v1/info"><code>/api/v1/info</code></a>.</p>
</body>
</html>
`,
    { status: 404, contentType: "text/html; charset=utf-8" }
  )

const notFound = HttpServerResponse.empty({ status: 404 })

/**
 * The path segments of a request URL, decoded; none when a segment would step outside the
 * served directory (`..`, `.`, or an encoded separator or NUL smuggled inside one).
 */
const pathSegments = (url: string): Option.Option<ReadonlyArray<string>> => {
  const pathname = url.split(/[?#]/, 1)[0]
  let decoded: string
  try {
    decoded = decodeURIComponent(pathname)
  } catch {
    return Option.none()
  }
  const segments = decoded.split("/").filter((segment) => segment !== "")
  return segments.some((s) => s === ".." || s === "." || s.includes("\\") || s.includes("\0"))
    ? Option.none()
    : Option.some(segments)
}

const serveFile = (file: string, cacheControl: string, contentType?: string) =>
  HttpServerResponse.file(file, {
    headers: contentType === undefined
      ? { "cache-control": cacheControl }
      : { "cache-control": cacheControl, "content-type": contentType }
  }).pipe(Effect.orDie)

const serveFrom = (configuredDir: string) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = path.resolve(configuredDir)
    const isFile = (file: string) =>
      fs.stat(file).pipe(
        Effect.map((info) => info.type === "File"),
        Effect.orElseSucceed(() => false)
      )

    const segments = pathSegments(request.url)
    if (Option.isNone(segments)) return HttpServerResponse.text("Bad path\n", { status: 400 })
    const parts = segments.value
    // Unknown API paths stay 404s rather than turning into the app.
    if (parts[0] === "api") return notFound

    if (parts.length > 0) {
      const file = path.join(dir, ...parts)
      if (yield* isFile(file)) return yield* serveFile(file, parts[0] === "assets" ? IMMUTABLE : REVALIDATE)
      // A missing file is a 404; any other path is a page of the app.
      if (path.extname(file) !== "") return notFound
    }
    const index = path.join(dir, "index.html")
    if (yield* isFile(index)) return yield* serveFile(index, REVALIDATE, "text/html; charset=utf-8")
    return notBuilt(dir)
  })

/** Adds the app's routes to the admin API's router; the API's own routes take precedence. */
export const layer: Layer.Layer<never, never, BrokerConfig> = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    return HttpApiBuilder.Router.use((router) => router.get("*", serveFrom(config.adminWebDir)))
  })
)
