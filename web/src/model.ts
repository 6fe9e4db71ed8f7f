// The shapes the API and the broadcaster speak, generated from the API's OpenAPI document (src/generated/api.ts, by
// `make web-types`), and what the UI adds to them.

import type { components } from "./generated/api";

type Schemas = components["schemas"];

export type InfraStatus = Schemas["InfraStatus"];
export const INFRA_STATUSES: readonly InfraStatus[] = [
  "Queued",
  "Running",
  "Waiting For Event",
  "Processing Step",
  "Completed",
  "Errored",
  "Cancelled",
];

/** The read model of one workflow (contracts.state.WorkflowState, public view). */
export type WorkflowView = Schemas["WorkflowView"];
/** An event with its sequence in the events stream: what GET /workflows/{id}/events lists and the WebSocket sends. */
export type RecordedEvent = Schemas["RecordedEvent"];
/** An event of a workflow's log: one of the event types, told apart by `type`. */
export type WorkflowEvent = RecordedEvent["event"];
/** What walking a workflow's hash chain found (GET /workflows/{id}/verify). */
export type ChainCheck = Schemas["ChainCheck"];
/** A workflow type's machine and what each of its states accepts. */
export type WorkflowTypeInfo = Schemas["WorkflowTypeInfo"];
export type PublishedType = Schemas["PublishedType"];
export type StateKind = Schemas["StateInfo"]["kind"];
export type CommandResult = Schemas["CommandResult"];
export type ClientConfig = Schemas["ClientConfig"];

/** The commands a person can send from the UI, in the order their buttons appear (terminate: the detail view only). */
export const COMMAND_KINDS = ["process", "approve", "reject", "cancel", "retry", "archive", "terminate"] as const;
export type CommandKind = (typeof COMMAND_KINDS)[number];

export const ENDED_INFRA_STATUSES: readonly InfraStatus[] = ["Completed", "Errored", "Cancelled"];

/** A bulk action (POST /workflows/bulk/<action>): one command for each workflow its filter matched at the start. */
export type BulkAction = Schemas["BulkView"]["action"];

/** GET /bulk/<id>; on the WebSocket (`?bulk=<id>`, type "bulk") the same, with `refused` as a count. */
export type BulkReport = Schemas["BulkView"];
export type BulkProgress = Omit<BulkReport, "refused"> & { refused: number };

/** A subscription to notifications, as GET /subscriptions lists it (its secret is shown once, when created). */
export type SubscriptionView = Schemas["SubscriptionView"];
export type SubscriptionCreated = Schemas["SubscriptionCreated"];
export type SubscriptionRequest = Schemas["SubscriptionRequest"];
/** What a one-click decision link would do (GET /decisions/{token}). */
export type DecisionPreview = Schemas["DecisionPreview"];
