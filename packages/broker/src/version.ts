/** Reported by the admin API and sent as the User-Agent of deliveries. */
export const VERSION = "0.1.0"
