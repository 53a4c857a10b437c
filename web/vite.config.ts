import { defineConfig } from 'vite';

// `npm run dev` / `npm run preview` serve the page on their own port and forward the API, the WebSocket and
// the embedded SFU's signalling to a running `liveclass serve` (LIVECLASS_API, default 127.0.0.1:8080), so
// the page always talks to its own origin, as it does when the binary serves web/dist itself.
const target = process.env.LIVECLASS_API ?? 'http://127.0.0.1:8080';
const proxy = {
  '/api': { target },
  '/ws': { target, ws: true },
  '/rtc': { target, ws: true },
};

export default defineConfig({
  // livekit-client alone is ~500 kB minified (145 kB gzipped): one chunk is fine for this page.
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 800 },
  server: { proxy },
  preview: { proxy },
});
