/**
 * Replay to one destination: one event, its failed deliveries (dead-lettered, and those
 * disabled or canceled) since a time, or everything it subscribes to since a time. The
 * confirmation spells out which events go out again and what the receiver will see.
 */
import type { AdminApi, Destination, States } from "@sluice/protocol"
import { Envelope } from "@sluice/protocol"
import type { Effect } from "effect"
import { Array as Arr, Schema } from "effect"
import { useId, useState } from "react"
import type { AdminClient, ApiFailure } from "./api.js"
import { ConfirmDialog } from "./ConfirmDialog.js"
import { formatTime, isoToLocalInput, localInputToIso } from "./format.js"
import { useAction } from "./useApi.js"

type Mode = "failed" | "stream" | "event"

const FAILED_STATES = ["dead", "disabled", "canceled"] as const satisfies ReadonlyArray<States.DeliveryState>
type FailedState = (typeof FAILED_STATES)[number]

const isEventId = Schema.is(Envelope.EventId)

type Replay = (client: AdminClient) => Effect.Effect<typeof AdminApi.ReplayResult.Type, ApiFailure>

const anHourAgo = () => isoToLocalInput(new Date(Date.now() - 3600_000).toISOString())

export const ReplayPanel = ({
  destination,
  onReplayed
}: {
  readonly destination: Destination.DestinationView
  readonly onReplayed: () => void
}) => {
  const [mode, setMode] = useState<Mode>("failed")
  const [since, setSince] = useState(anHourAgo)
  const [states, setStates] = useState<ReadonlySet<FailedState>>(() => new Set(FAILED_STATES))
  const [eventId, setEventId] = useState("")
  const [confirming, setConfirming] = useState(false)
  const [problem, setProblem] = useState<string | null>(null)
  const [result, setResult] = useState<string | null>(null)
  const action = useAction()
  const id = useId()
  const sinceIso = localInputToIso(since)
  const chosen = FAILED_STATES.filter((s) => states.has(s))

  /** The call the form describes, or what to fix first. */
  const plan = (): { readonly problem: string } | { readonly replay: Replay } => {
    const path = { id: destination.id }
    if (mode === "event") {
      const wanted = eventId.trim()
      return isEventId(wanted)
        ? { replay: (client) => client.events.replay({ path: { id: wanted }, payload: { destinationId: destination.id } }) }
        : { problem: "Enter the id of the event to replay." }
    }
    if (sinceIso === undefined) return { problem: "Choose the time to replay from." }
    if (mode === "stream") return { replay: (client) => client.destinations.replayStream({ path, payload: { since: sinceIso } }) }
    return Arr.isNonEmptyReadonlyArray(chosen)
      ? { replay: (client) => client.destinations.replay({ path, payload: { since: sinceIso, states: chosen } }) }
      : { problem: "Choose at least one kind of failed delivery." }
  }
  const open = () => {
    const planned = plan()
    setProblem("problem" in planned ? planned.problem : null)
    setResult(null)
    if ("replay" in planned) setConfirming(true)
  }
  const close = () => {
    setConfirming(false)
    action.reset()
  }
  const confirm = async () => {
    const planned = plan()
    if (!("replay" in planned)) return
    const answer = await action.run(planned.replay)
    if (answer === undefined) return
    close()
    setResult(
      answer.replayed === 0
        ? "Nothing matched: no delivery was queued again."
        : `Queued ${answer.replayed} deliver${answer.replayed === 1 ? "y" : "ies"} again.`
    )
    onReplayed()
  }
  const toggle = (state: FailedState) =>
    setStates((current) => {
      const next = new Set(current)
      if (next.has(state)) next.delete(state)
      else next.add(state)
      return next
    })

  const name = <strong>{destination.name}</strong>
  const when = sinceIso === undefined ? "" : formatTime(sinceIso)
  return (
    <section className="card" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Replay</h2>
      <form
        className="replay"
        onSubmit={(event) => {
          event.preventDefault()
          open()
        }}
      >
        <fieldset>
          <legend>What to send again</legend>
          <label className="choice">
            <input type="radio" name={`${id}-mode`} checked={mode === "failed"} onChange={() => setMode("failed")} />
            Failed deliveries since a time
          </label>
          <label className="choice">
            <input type="radio" name={`${id}-mode`} checked={mode === "stream"} onChange={() => setMode("stream")} />
            Everything since a time
          </label>
          <label className="choice">
            <input type="radio" name={`${id}-mode`} checked={mode === "event"} onChange={() => setMode("event")} />
            One event
          </label>
        </fieldset>
        {mode === "event" ? (
          <div className="field">
            <label htmlFor={`${id}-event`}>Event id</label>
            <input id={`${id}-event`} value={eventId} onChange={(event) => setEventId(event.target.value)} />
          </div>
        ) : (
          <div className="field">
            <label htmlFor={`${id}-since`}>Since</label>
            <input id={`${id}-since`} type="datetime-local" value={since} onChange={(event) => setSince(event.target.value)} />
          </div>
        )}
        {mode === "failed" && (
          <fieldset>
            <legend>Deliveries that are</legend>
            {FAILED_STATES.map((state) => (
              <label key={state} className="choice">
                <input type="checkbox" checked={states.has(state)} onChange={() => toggle(state)} /> {state}
              </label>
            ))}
          </fieldset>
        )}
        <div className="buttons">
          <button type="submit" className="button">
            Replay…
          </button>
        </div>
        {problem !== null && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
        {result !== null && (
          <p className="success" role="status">
            {result}
          </p>
        )}
      </form>
      {confirming && (
        <ConfirmDialog
          title={`Replay to ${destination.name}?`}
          confirmLabel="Replay"
          state={action.state}
          onConfirm={() => void confirm()}
          onCancel={close}
        >
          {mode === "event" && (
            <p>
              Event <code>{eventId.trim()}</code> is queued for {name} again and delivered with fresh attempts.
            </p>
          )}
          {mode === "failed" && (
            <p>
              Every delivery to {name} that is {[...states].join(", ")} and changed since {when} is queued again, oldest
              first. Deliveries that succeeded are not sent again.
            </p>
          )}
          {mode === "stream" && (
            <p>
              Every event {name} subscribes to that arrived since {when} and is still in the stream is delivered again,
              oldest first — <strong>including events it already received</strong>. The receiver sees them with their
              original <code>webhook-id</code> and should treat them as duplicates.
            </p>
          )}
        </ConfirmDialog>
      )}
    </section>
  )
}
