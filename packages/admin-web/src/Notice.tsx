/**
 * What a page says instead of (or above) its data: loading, an error in the page (with a
 * retry where one helps), an empty state that says what would fill it.
 */
import type { ReactNode } from "react"
import type { Remote } from "./useApi.js"

export const ErrorNotice = ({ message, onRetry }: { readonly message: string; readonly onRetry?: () => void }) => (
  <div className="error" role="alert">
    <span>{message}</span>
    {onRetry !== undefined && (
      <button type="button" className="button small" onClick={onRetry}>
        Try again
      </button>
    )}
  </div>
)

export const Empty = ({ children }: { readonly children: ReactNode }) => <p className="note empty">{children}</p>

/**
 * Renders a remote value: "Loading…", the error, or `children` with the value; a refresh that
 * failed shows its error above the last value.
 */
export const RemoteView = <A,>({
  remote,
  onRetry,
  children
}: {
  readonly remote: Remote<A>
  readonly onRetry?: () => void
  readonly children: (value: A) => ReactNode
}) => {
  switch (remote._tag) {
    case "Loading":
      return (
        <p className="note" role="status">
          Loading…
        </p>
      )
    case "Failed":
      return <ErrorNotice message={remote.message} onRetry={onRetry} />
    case "Loaded":
      return (
        <>
          {remote.error !== undefined && <ErrorNotice message={`Showing the last answer: ${remote.error}`} />}
          {children(remote.value)}
        </>
      )
  }
}
