// The shapes the API and the broadcaster speak (contracts/ on the Python side), as the UI uses them.

export const INFRA_STATUSES = [
  "Queued",
  "Running",
  "Waiting For Event",
  "Processing Step",
  "Completed",
  "Errored",
  "Cancelled",
] as const;
export type InfraStatus = (typeof INFRA_STATUSES)[number];

/** The read model of one workflow (contracts.state.WorkflowState, public view). */
export interface WorkflowView {
  id: string;
  type: string | null;
  business_state: string | null;
  infra_status: InfraStatus;
  output: number | null; // the last step result's output
  attempt: number;
  error: string | null;
  context: Record<string, unknown>;
  deadline_at?: string | null; // when the waiting state's deadline passes
  created_at: string | null;
  updated_at: string | null;
  last_sequence: number;
  archived?: boolean;
  stopped?: "cancelled" | "terminated" | null;
  waiting_for?: string[]; // who may answer it now: names, or "role:<role>"
  search_values?: Record<string, number | string>; // its type's search fields
}

/** An event of a workflow's log: the envelope every message carries, plus its type's own fields. */
export interface WorkflowEvent {
  type: string;
  schema_version: number;
  message_id: string;
  workflow_id: string;
  occurred_at: string;
  causation_id: string | null;
  correlation_id: string | null;
  previous_hash?: string | null; // its link in the log's hash chain: the SHA-256 of the event before it
  [field: string]: unknown;
}

/** An event with its sequence in the events stream: what GET /workflows/{id}/events lists and the WebSocket sends. */
export interface RecordedEvent {
  sequence: number;
  event: WorkflowEvent;
}

/** What walking a workflow's hash chain found (GET /workflows/{id}/verify). */
export interface ChainCheck {
  workflow_id: string;
  verified: boolean;
  events: number;
  head: string | null;
  broken_at: number | null;
  reason: string | null;
}

export type StateKind = "wait" | "step" | "succeeded" | "failed" | "cancelled";

/** contracts.types.WorkflowTypeInfo: a workflow type's machine and what each of its states accepts. */
export interface WorkflowTypeInfo {
  name: string;
  title: string;
  initial: string;
  states: { name: string; kind: StateKind; accepts: string[] }[];
  transitions: { trigger: string; source: string; dest: string }[];
  search_fields?: Record<string, "number" | "text">; // what the list searches and shows as columns
}

/** The commands a person can send from the UI, in the order their buttons appear (terminate: the detail view only). */
export const COMMAND_KINDS = ["process", "approve", "reject", "cancel", "retry", "archive", "terminate"] as const;
export type CommandKind = (typeof COMMAND_KINDS)[number];

export interface CommandResult {
  command_id: string;
  workflow_id: string;
  outcome: "accepted" | "pending";
  duplicate: boolean;
  workflow: WorkflowView | null;
}

export const ENDED_INFRA_STATUSES: readonly InfraStatus[] = ["Completed", "Errored", "Cancelled"];

/** A bulk action (POST /workflows/bulk/<action>): one command for each workflow its filter matched at the start. */
export type BulkAction = "cancel" | "approve" | "reject" | "retry" | "archive";

/** GET /bulk/<id>; on the WebSocket (`?bulk=<id>`, type "bulk") the same, with `refused` as a count. */
export interface BulkReport<Refused = { workflow_id: string; code: string; reason: string }[]> {
  id: string;
  action: BulkAction;
  filter: string;
  by: string;
  total: number;
  done: number;
  refused: Refused;
  remaining: number;
  started_at: string;
  finished_at: string | null;
  stopped: string | null; // why it ended before acting on every workflow
}
export type BulkProgress = BulkReport<number>;
