/**
 * Operator actions change what receivers get (pause, replay, a new secret), so each asks
 * first, saying what will happen. A modal `<dialog>`: focus moves into it (onto Cancel or the
 * first field, never straight onto the action), Escape cancels, Enter in a field submits;
 * while the call runs the buttons are disabled, and a failure stays in the dialog so the
 * operator can retry or cancel.
 */
import type { ReactNode } from "react"
import { useEffect, useId, useRef } from "react"
import type { ActionState } from "./useApi.js"

export interface ConfirmDialogProps {
  readonly title: string
  /** The confirm button's label: the action in a few words ("Pause deliveries"). */
  readonly confirmLabel: string
  readonly danger?: boolean
  readonly state: ActionState
  readonly onConfirm: () => void
  readonly onCancel: () => void
  /** What will happen, and any fields the action needs. */
  readonly children: ReactNode
}

export const ConfirmDialog = ({ title, confirmLabel, danger, state, onConfirm, onCancel, children }: ConfirmDialogProps) => {
  const ref = useRef<HTMLDialogElement>(null)
  const titleId = useId()
  const running = state._tag === "Running"
  useEffect(() => {
    const dialog = ref.current
    if (dialog !== null && !dialog.open) dialog.showModal()
    return () => dialog?.close()
  }, [])
  return (
    <dialog
      ref={ref}
      className="dialog"
      aria-labelledby={titleId}
      onCancel={(event) => {
        event.preventDefault()
        if (!running) onCancel()
      }}
    >
      <form
        method="dialog"
        onSubmit={(event) => {
          event.preventDefault()
          if (!running) onConfirm()
        }}
      >
        <h2 id={titleId}>{title}</h2>
        <div className="dialog-body">{children}</div>
        {state._tag === "Failed" && (
          <p className="error" role="alert">
            {state.message}
          </p>
        )}
        <div className="dialog-buttons">
          <button type="button" className="button" onClick={onCancel} disabled={running}>
            Cancel
          </button>
          <button type="submit" className={danger === true ? "button danger" : "button primary"} disabled={running}>
            {running ? "Working…" : confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  )
}
