// Bulk actions: start one on the server, then follow its progress on the broadcaster's WebSocket (`?bulk=<id>`: where
// it stands, then each change, closed once it has finished). Should the socket fail, the API says where it stands,
// asked again until it has finished. The report at the end comes from the API: it lists every refusal.

import { api, type ListFilters } from "./api";
import { token } from "./auth";
import type { BulkAction, BulkProgress, BulkReport } from "./model";

const POLL_MS = 500;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Run a bulk action on every workflow the filters match, calling `onProgress` as it goes; its final report. */
export async function runBulk(
  action: BulkAction,
  filters: ListFilters,
  body: Record<string, string> | undefined,
  onProgress: (progress: BulkProgress) => void,
): Promise<BulkReport> {
  const started = await api.startBulk(action, filters, body);
  onProgress({ ...started, refused: started.refused.length });
  if (!started.finished_at) await followOnSocket(started.id, onProgress);
  for (;;) {
    const report = await api.bulk(started.id);
    if (report.finished_at) return report;
    onProgress({ ...report, refused: report.refused.length });
    await sleep(POLL_MS);
  }
}

/** Until the bulk has finished, or the socket closes or fails (the API is asked then). */
async function followOnSocket(id: string, onProgress: (progress: BulkProgress) => void): Promise<void> {
  let url: URL;
  try {
    url = new URL((await api.config()).broadcaster_url);
  } catch {
    return;
  }
  url.searchParams.set("bulk", id);
  if (token.value) url.searchParams.set("token", token.value);
  await new Promise<void>((resolve) => {
    let socket: WebSocket;
    try {
      socket = new WebSocket(url);
    } catch {
      resolve();
      return;
    }
    socket.addEventListener("message", (message) => {
      let progress: BulkProgress & { type?: string };
      try {
        progress = JSON.parse(String(message.data));
      } catch {
        return;
      }
      if (progress?.type !== "bulk") return; // a refusal: the final report lists them all
      onProgress(progress);
      if (progress.finished_at) socket.close();
    });
    socket.addEventListener("close", () => resolve());
  });
}
