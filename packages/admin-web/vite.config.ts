import react from "@vitejs/plugin-react"
import { defineConfig } from "vite"

/** `vite` serves the app with the API of a broker running locally; `vite build` writes `dist/`, which the broker serves. */
export default defineConfig({
  plugins: [react()],
  server: {
    proxy: { "/api": "http://127.0.0.1:7700" }
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    rollupOptions: {
      output: {
        // Libraries change less often than the app: separate files stay cached across app releases.
        manualChunks: {
          charts: ["recharts"],
          effect: ["effect", "@effect/platform"]
        }
      }
    }
  }
})
