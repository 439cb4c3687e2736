/**
 * Every destination with its health, kept current without a refresh: the broker's
 * Server-Sent Events stream (`GET /api/v1/live`) pushes the list on connect, on every health
 * change and every few seconds. When the stream fails (an older broker, a proxy that
 * buffers) the list is polled every 5 s instead, and the stream is tried again now and then.
 */
import { Destination } from "@sluice/protocol"
import { Duration, Effect, Either, Fiber, Schedule, Schema } from "effect"
import { useEffect, useState } from "react"
import { call, liveUrl } from "./api.js"
import type { Remote } from "./useApi.js"
import { loading } from "./useApi.js"

export type Destinations = ReadonlyArray<Destination.DestinationView>

/** How the list is kept current, shown beside it. */
export type LiveMode = "connecting" | "live" | "polling"

const POLL_EVERY = Duration.seconds(5)
/** How long to poll before trying the stream again. */
const RETRY_STREAM_AFTER_MS = 30_000

const decodeList = Schema.decodeUnknownEither(Schema.Array(Destination.DestinationView))

/** The JSON of one `destinations` event, when it is a valid list. */
export const parseDestinationsEvent = (data: string): Destinations | undefined => {
  let json: unknown
  try {
    json = JSON.parse(data)
  } catch {
    return undefined
  }
  return Either.getOrUndefined(decodeList(json))
}

export const useLiveDestinations = (token: string): { readonly remote: Remote<Destinations>; readonly mode: LiveMode } => {
  const [remote, setRemote] = useState<Remote<Destinations>>(loading)
  const [mode, setMode] = useState<LiveMode>("connecting")

  useEffect(() => {
    let source: EventSource | undefined
    let polling: Fiber.RuntimeFiber<unknown> | undefined
    let retry: number | undefined

    const stopPolling = () => {
      if (polling !== undefined) Effect.runFork(Fiber.interrupt(polling))
      polling = undefined
    }
    const startPolling = () => {
      setMode("polling")
      if (polling !== undefined) return
      polling = Effect.runFork(
        call((client) => client.destinations.list()).pipe(
          Effect.match({
            onFailure: (problem) =>
              setRemote((previous) =>
                previous._tag === "Loaded"
                  ? { ...previous, error: problem.message }
                  : { _tag: "Failed", message: problem.message }
              ),
            onSuccess: (value) => setRemote({ _tag: "Loaded", value })
          }),
          Effect.repeat(Schedule.spaced(POLL_EVERY))
        )
      )
    }
    const connect = () => {
      retry = undefined
      const stream = new EventSource(liveUrl(token))
      source = stream
      stream.addEventListener("destinations", (event) => {
        const list = parseDestinationsEvent((event as MessageEvent<string>).data)
        if (list === undefined) return
        stopPolling()
        setMode("live")
        setRemote({ _tag: "Loaded", value: list })
      })
      stream.onerror = () => {
        stream.close()
        if (source === stream) source = undefined
        startPolling()
        retry = window.setTimeout(connect, RETRY_STREAM_AFTER_MS)
      }
    }

    connect()
    return () => {
      source?.close()
      stopPolling()
      if (retry !== undefined) window.clearTimeout(retry)
    }
  }, [token])

  return { remote, mode }
}
