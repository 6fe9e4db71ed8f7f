// How values read on the page.

import type { InfraStatus, RecordedEvent, StateKind, WorkflowEvent } from "./model";

export function clockTime(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "";
}

export function dateTime(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString([], { hour12: false }) : "";
}

/** How long ago, as a person says it ("just now", "5 min ago", "3 h ago"); the date and time once over a day. */
export function relativeTime(iso: string | null | undefined, now: number): string {
  if (!iso) return "";
  const seconds = Math.max(0, (now - new Date(iso).getTime()) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return dateTime(iso);
}

function sameDay(iso: string): boolean {
  return new Date(iso).toDateString() === new Date().toDateString();
}

export function duration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  const [h, m, s] = [Math.floor(seconds / 3600), Math.floor(seconds / 60) % 60, seconds % 60];
  const pad = (n: number) => String(n).padStart(2, "0");
  if (h) return `${h}h ${pad(m)}m`;
  if (m) return `${m}m ${pad(s)}s`;
  return `${s}s`;
}

export function output(value: number | null | undefined): string {
  return value == null ? "—" : value.toFixed(3);
}

/** An id short enough to read: a derived one (`flow-1-2-1-result`) whole, a generated one by its end (uuid7 ids
 * share their first digits with everything created in the same minute). */
export function shortId(id: string | null | undefined): string {
  if (!id) return "";
  return id.length > 24 ? `…${id.slice(-8)}` : id;
}

export type Tone = "idle" | "busy" | "waiting" | "good" | "bad" | "off";

export const TONE_OF_INFRA: Record<InfraStatus, Tone> = {
  Queued: "idle",
  Running: "busy",
  "Waiting For Event": "waiting",
  "Processing Step": "busy",
  Completed: "good",
  Errored: "bad",
  Cancelled: "off",
};

export const TONE_OF_KIND: Record<StateKind, Tone> = {
  wait: "waiting",
  step: "busy",
  succeeded: "good",
  failed: "bad",
  cancelled: "off",
};

// What an event's details leave out: who acted (the timeline's own column) and its envelope, which the API names
// (GET /config: contracts.events.ENVELOPE_FIELDS) and `learnEnvelope` adds.
const NOT_DETAILS = new Set(["actor"]);

export function learnEnvelope(fields: readonly string[]): void {
  for (const name of fields) NOT_DETAILS.add(name);
}

/** An event's own fields, e.g. "attempt 2 · output 0.734"; works for event types the UI has never heard of. */
export function eventDetails(event: WorkflowEvent): string {
  return fields(event, " · ", (name) => !NOT_DETAILS.has(name));
}

function fields(values: object, separator: string, shown: (name: string) => boolean = () => true): string {
  const empty = (value: unknown) =>
    value === "" || value === null || value === undefined || (typeof value === "object" && !Object.keys(value).length);
  return Object.entries(values)
    .filter(([name, value]) => shown(name) && !empty(value))
    .map(([name, value]) => `${name.replace(/_/g, " ")} ${fieldText(name, value)}`)
    .join(separator);
}

function fieldText(name: string, value: unknown): string {
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
  if (name.endsWith("_at") && typeof value === "string") return sameDay(value) ? clockTime(value) : dateTime(value);
  if (name.endsWith("_id") && typeof value === "string") return shortId(value);
  if (Array.isArray(value)) return value.map((item) => fieldText(name, item)).join(", ");
  if (typeof value === "object" && value !== null) return `(${fields(value, ", ")})`;
  return String(value);
}

// The command behind a group of events (they share its id as causation_id), named after the first event it caused.
function commandName(event: WorkflowEvent): string {
  switch (event.type) {
    case "WorkflowCreated":
      return "create";
    case "CommandRejected":
    case "InputRecorded":
      return String(event.command_kind);
    case "TransitionTaken":
      return String(event.trigger);
    case "StepCompleted":
    case "StepFailed":
    case "StepAttemptFailed":
      return "job_id" in event && event.job_id ? "job result" : "timer";
    case "StepScheduled":
      return "timer";
    case "WorkflowCancelled":
      return "cancel";
    case "WorkflowTerminated":
      return "terminate";
    case "WorkflowRetried":
      return "retry";
    case "WorkflowArchived":
      return "archive";
    default:
      return "command";
  }
}

/** For each causation id in the timeline, a name for the command it stands for. */
export function commandNames(entries: RecordedEvent[]): Map<string, string> {
  const names = new Map<string, string>();
  for (const { event } of entries) {
    if (event.causation_id && !names.has(event.causation_id)) names.set(event.causation_id, commandName(event));
  }
  return names;
}

/** Who acted: the person whose command caused the event (none for a step's result or a timer). */
export function actorOf(event: WorkflowEvent): string {
  return "actor" in event ? (event.actor ?? "") : "";
}
