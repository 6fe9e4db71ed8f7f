// One WebSocket to the broadcaster. It remembers the highest stream sequence it has passed on; after a disconnect it
// reconnects by itself, with backoff, asking for `?since=<that sequence>` so the broadcaster replays what was missed.
// A message at or below that sequence was already passed on and is dropped: nothing is applied twice. It carries the
// page's token as `?token=`; a connection closed for want of a valid one (4401) signs the page out.

import { ref } from "vue";
import { api } from "./api";
import { signOut, token } from "./auth";
import type { RecordedEvent } from "./model";

// "connecting" only before the first connection; while it reconnects the feed is "disconnected".
export type ConnectionState = "connecting" | "connected" | "disconnected";

/** Sent when the connection is idle: every event up to `sequence` has been sent. */
interface Heartbeat {
  type: "heartbeat";
  sequence: number;
}

const FIRST_RETRY_MS = 500;
const LONGEST_RETRY_MS = 5000;
const CANNOT_RESUME = 1008; // `since` is past the end of the log: the log was reset, what this page shows is void
const UNAUTHORIZED = 4401;

export class LiveFeed {
  readonly state = ref<ConnectionState>("connecting");
  readonly lastSequence = ref(0);
  private readonly listeners = new Set<(recorded: RecordedEvent) => void>();
  private readonly openListeners = new Set<() => void>();
  private failures = 0;
  private url: string | null = null;

  /** Call `listener` with every new event, in stream order; returns the function that stops it. */
  onEvent(listener: (recorded: RecordedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Call `listener` each time the socket (re)opens. */
  onOpen(listener: () => void): () => void {
    this.openListeners.add(listener);
    return () => this.openListeners.delete(listener);
  }

  start(): void {
    void this.connect();
  }

  private async socketUrl(): Promise<string> {
    try {
      this.url = (await api.config()).broadcaster_url;
    } catch {
      // The API is down too: use the address it gave before, or guess its default.
      this.url ??= `${location.protocol === "https:" ? "wss" : "ws"}://${location.hostname}:8001/ws`;
    }
    const url = new URL(this.url);
    if (this.lastSequence.value > 0) url.searchParams.set("since", String(this.lastSequence.value));
    if (token.value) url.searchParams.set("token", token.value);
    return url.toString();
  }

  private async connect(): Promise<void> {
    let socket: WebSocket;
    try {
      socket = new WebSocket(await this.socketUrl());
    } catch {
      this.retryLater();
      return;
    }
    socket.addEventListener("open", () => {
      this.state.value = "connected";
      this.failures = 0;
      this.openListeners.forEach((listener) => listener());
    });
    socket.addEventListener("message", (message) => this.receive(message.data));
    socket.addEventListener("close", (closed) => {
      if (closed.code === CANNOT_RESUME && this.lastSequence.value > 0) location.reload();
      else if (closed.code === UNAUTHORIZED) {
        this.state.value = "disconnected";
        signOut(closed.reason);
      } else this.retryLater();
    });
  }

  private receive(data: unknown): void {
    let message: RecordedEvent | Heartbeat;
    try {
      message = JSON.parse(String(data));
    } catch {
      return;
    }
    if (typeof message?.sequence !== "number") return;
    if ("type" in message && message.type === "heartbeat") {
      // Everything up to this sequence has been sent: resume from here, even if none of it was ours to see.
      this.lastSequence.value = Math.max(this.lastSequence.value, message.sequence);
      return;
    }
    if (!("event" in message) || message.sequence <= this.lastSequence.value) return;
    this.lastSequence.value = message.sequence;
    const recorded = message;
    this.listeners.forEach((listener) => listener(recorded));
  }

  private retryLater(): void {
    this.state.value = "disconnected";
    const delay = Math.min(FIRST_RETRY_MS * 2 ** this.failures, LONGEST_RETRY_MS) * (0.8 + Math.random() * 0.4);
    this.failures += 1;
    setTimeout(() => void this.connect(), delay);
  }
}

export const live = new LiveFeed();
