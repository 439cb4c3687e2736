/**
 * Client-side navigation over the History API: links change the URL without reloading the
 * app, the back button works, and every page has a real URL. Small enough not to need a
 * routing library.
 */
import type { AnchorHTMLAttributes, MouseEvent } from "react"
import { useSyncExternalStore } from "react"

const CHANGED = "sluice:navigate"

const subscribe = (onChange: () => void) => {
  window.addEventListener("popstate", onChange)
  window.addEventListener(CHANGED, onChange)
  return () => {
    window.removeEventListener("popstate", onChange)
    window.removeEventListener(CHANGED, onChange)
  }
}

const snapshot = () => window.location.pathname + window.location.search

/** The current path and query; re-renders on every navigation. */
export const useLocation = (): { readonly pathname: string; readonly search: string } => {
  const location = useSyncExternalStore(subscribe, snapshot)
  const queryAt = location.indexOf("?")
  return queryAt === -1
    ? { pathname: location, search: "" }
    : { pathname: location.slice(0, queryAt), search: location.slice(queryAt) }
}

/** Goes to `to` inside the app; `replace` rewrites the current history entry instead of adding one. */
export const navigate = (to: string, options: { readonly replace?: boolean } = {}) => {
  if (to === snapshot()) return
  if (options.replace === true) window.history.replaceState(null, "", to)
  else window.history.pushState(null, "", to)
  window.scrollTo(0, 0)
  window.dispatchEvent(new Event(CHANGED))
}

/** An ordinary link (open in a new tab, copy address) that navigates in place on a plain click. */
export const Link = ({ to, onClick, ...rest }: { readonly to: string } & AnchorHTMLAttributes<HTMLAnchorElement>) => {
  const handle = (event: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(event)
    if (event.defaultPrevented || event.button !== 0) return
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return
    event.preventDefault()
    navigate(to)
  }
  return <a href={to} onClick={handle} {...rest} />
}
