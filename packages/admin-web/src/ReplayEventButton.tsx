/**
 * Sends one event to one destination again, after a confirmation saying so; used beside a
 * delivery on the event page and in a destination's recent deliveries.
 */
import { useState } from "react"
import { ConfirmDialog } from "./ConfirmDialog.js"
import { useAction } from "./useApi.js"

export const ReplayEventButton = ({
  eventId,
  destinationId,
  onReplayed,
  compact
}: {
  readonly eventId: string
  readonly destinationId: string
  readonly onReplayed: () => void
  /** In a table row: a short label (the row says which event and destination). */
  readonly compact?: boolean
}) => {
  const [open, setOpen] = useState(false)
  const action = useAction()
  const close = () => {
    setOpen(false)
    action.reset()
  }
  const confirm = async () => {
    const result = await action.run((client) =>
      client.events.replay({ path: { id: eventId }, payload: { destinationId } })
    )
    if (result === undefined) return
    close()
    onReplayed()
  }
  const label = `Replay to ${destinationId}`
  return (
    <>
      <button
        type="button"
        className={compact === true ? "button small" : "button"}
        onClick={() => setOpen(true)}
        aria-label={compact === true ? `Replay event ${eventId} to ${destinationId}` : undefined}
      >
        {compact === true ? "Replay" : label}
      </button>
      {open && (
        <ConfirmDialog
          title={`Replay event to ${destinationId}?`}
          confirmLabel="Replay event"
          state={action.state}
          onConfirm={() => void confirm()}
          onCancel={close}
        >
          <p>
            Event <code>{eventId}</code> is queued for <strong>{destinationId}</strong> again and delivered with fresh
            attempts, whatever happened to it before. The receiver gets the same <code>webhook-id</code>, so it can
            tell a replay from a new event.
          </p>
        </ConfirmDialog>
      )}
    </>
  )
}
