/** Health and delivery states as coloured badges (colours in styles.css, one per state). */
import type { States } from "@sluice/protocol"

export const HealthBadge = ({ state }: { readonly state: States.HealthState }) => (
  <span className={`badge badge-${state}`}>{state}</span>
)

export const DeliveryBadge = ({ state }: { readonly state: States.DeliveryState }) => (
  <span className={`badge delivery-${state}`}>{state}</span>
)
