import vue from "@vitejs/plugin-vue";
import { defineConfig } from "vite";

// `npm run dev` serves the UI with hot reload and forwards API calls to a running API (`make run`, or WF_API_PORT).
const api = `http://127.0.0.1:${process.env.WF_API_PORT ?? "8000"}`;

export default defineConfig({
  plugins: [vue()],
  build: { outDir: "dist", emptyOutDir: true },
  server: {
    proxy: Object.fromEntries(["/workflows", "/types", "/config", "/healthz", "/schema"].map((path) => [path, api])),
  },
});
