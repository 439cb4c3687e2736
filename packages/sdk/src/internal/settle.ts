/** How the Promise faces of the SDK hand back an Effect's outcome. */
import { Cause, Exit } from "effect"

/** Rejects with the typed failure itself rather than Effect's wrapper, so `_tag` and fields are there. */
export const settle = async <A, E>(exit: Promise<Exit.Exit<A, E>>): Promise<A> => {
  const result = await exit
  if (Exit.isSuccess(result)) return result.value
  throw Cause.squash(result.cause)
}
