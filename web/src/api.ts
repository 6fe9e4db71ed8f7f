// The HTTP API, same origin, with this page's token. Errors carry the server's own words: `detail` of its problem
// body. A 401 means the token is not (or no longer) good: the page signs out and asks for another.

import { type Identity, signOut, token } from "./auth";
import type {
  BulkAction,
  BulkReport,
  ChainCheck,
  ClientConfig,
  CommandKind,
  CommandResult,
  DecisionPreview,
  PublishedType,
  RecordedEvent,
  SubscriptionCreated,
  SubscriptionRequest,
  SubscriptionView,
  WorkflowTypeInfo,
  WorkflowView,
} from "./model";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly code?: string,
  ) {
    super(detail);
  }
}

interface Answer<T> {
  status: number;
  data: T;
  headers: Headers;
}

async function request<T>(method: string, path: string, body?: unknown): Promise<Answer<T>> {
  let response: Response;
  try {
    const headers: Record<string, string> = token.value ? { authorization: `Bearer ${token.value}` } : {};
    if (body !== undefined) headers["content-type"] = "application/json";
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "the API cannot be reached");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = typeof data?.detail === "string" ? data.detail : `${response.status} ${response.statusText}`;
    if (response.status === 401) signOut(token.value ? detail : "");
    throw new ApiError(response.status, detail, data?.code);
  }
  return { status: response.status, data: data as T, headers: response.headers };
}

const workflowPath = (id: string) => `/workflows/${encodeURIComponent(id)}`;

/** How many rows a list or a timeline shows at first, and adds each time more are asked for. */
export const PAGE_SIZE = 200;

/** A page of a listing, and where the next one starts ("" on the last). */
export interface Page<T> {
  items: T[];
  next: string;
}

export interface ListFilters {
  /** "true": the archived workflows, which are listed only then. */
  archived?: string;
  business_state?: string;
  infra_status?: string;
  type?: string;
  /** Search fields compared, as written: "amount>=1000", "requester=ann". */
  expressions?: string[];
}

/** A list's query: the filters as name=value, the expressions as they are (their operator is part of the text). */
function listQuery({ expressions = [], ...filters }: ListFilters, extra: Record<string, string>): string {
  const query = new URLSearchParams(extra);
  for (const [name, value] of Object.entries(filters)) if (value) query.set(name, value);
  return [query.toString(), ...expressions.map(encodeURIComponent)].filter(Boolean).join("&");
}

export const api = {
  /** Who the token belongs to. */
  async me(): Promise<Identity> {
    return (await request<Identity>("GET", "/me")).data;
  },

  async config(): Promise<ClientConfig> {
    return (await request<ClientConfig>("GET", "/config")).data;
  },

  async types(): Promise<WorkflowTypeInfo[]> {
    return (await request<WorkflowTypeInfo[]>("GET", "/types")).data;
  },

  /** One version of a type: an instance created on it runs on it until it ends or is migrated. */
  async typeVersion(name: string, version: number): Promise<PublishedType> {
    const path = `/types/${encodeURIComponent(name)}/versions/${version}`;
    return (await request<PublishedType>("GET", path)).data;
  },

  /** A page of the workflows matching the filters, newest first (archived ones are not listed), and the cursor of
   * the next page, if any. */
  async list(filters: ListFilters = {}, cursor = "", limit = PAGE_SIZE): Promise<Page<WorkflowView>> {
    const query = listQuery(filters, cursor ? { limit: String(limit), cursor } : { limit: String(limit) });
    const { data, headers } = await request<WorkflowView[]>("GET", `/workflows?${query}`);
    return { items: data, next: headers.get("X-Next-Cursor") ?? "" };
  },

  /** What waits for this page's holder now, the longest waiting first (one page: up to 1000). */
  async inbox(): Promise<WorkflowView[]> {
    return (await request<WorkflowView[]>("GET", "/me/inbox?limit=1000")).data;
  },

  /** Every workflow matching the filters, page after page. */
  async listAll(filters: ListFilters = {}): Promise<WorkflowView[]> {
    const all: WorkflowView[] = [];
    let cursor = "";
    do {
      const page = await api.list(filters, cursor, 1000);
      all.push(...page.items);
      cursor = page.next;
    } while (cursor);
    return all;
  },

  async get(id: string): Promise<WorkflowView> {
    return (await request<WorkflowView>("GET", workflowPath(id))).data;
  },

  /** The workflow's log after sequence `after` (its first page: up to 1000 events). */
  /** A page of the workflow's log from after sequence `after`, oldest first, and where the next page starts ("":
   * this was the last). */
  async events(id: string, after = 0, limit = PAGE_SIZE): Promise<Page<RecordedEvent>> {
    const path = `${workflowPath(id)}/events?after=${after}&limit=${limit}`;
    const { data, headers } = await request<RecordedEvent[]>("GET", path);
    return { items: data, next: headers.get("X-Next-Cursor") ?? "" };
  },

  /** Walk the hash chain of the workflow's log: does every event link to the one before it? */
  async verify(id: string): Promise<ChainCheck> {
    return (await request<ChainCheck>("GET", `${workflowPath(id)}/verify`)).data;
  },

  async create(type: string, input: Record<string, unknown> = {}): Promise<Answer<CommandResult>> {
    return request<CommandResult>("POST", "/workflows", { type, input });
  },

  async command(id: string, kind: CommandKind, body?: Record<string, string>): Promise<Answer<CommandResult>> {
    return request<CommandResult>("POST", `${workflowPath(id)}/${kind}`, body);
  },

  /** Start a bulk action on every workflow the filters match now (archived ones are left out): answered at once. */
  async startBulk(action: BulkAction, filters: ListFilters = {}, body?: Record<string, string>): Promise<BulkReport> {
    const query = listQuery(filters, {});
    return (await request<BulkReport>("POST", `/workflows/bulk/${action}${query ? `?${query}` : ""}`, body)).data;
  },

  async bulk(id: string): Promise<BulkReport> {
    return (await request<BulkReport>("GET", `/bulk/${encodeURIComponent(id)}`)).data;
  },

  async subscriptions(): Promise<SubscriptionView[]> {
    return (await request<SubscriptionView[]>("GET", "/subscriptions")).data;
  },

  async subscribe(subscription: SubscriptionRequest): Promise<SubscriptionCreated> {
    return (await request<SubscriptionCreated>("POST", "/subscriptions", subscription)).data;
  },

  async unsubscribe(id: string): Promise<void> {
    await request<null>("DELETE", `/subscriptions/${encodeURIComponent(id)}`);
  },

  /** What a decision link would do; an ApiError (with its code) when it cannot be used. */
  async previewDecision(linkToken: string): Promise<DecisionPreview> {
    return (await request<DecisionPreview>("GET", `/decisions/${encodeURIComponent(linkToken)}`)).data;
  },

  async decide(linkToken: string): Promise<Answer<CommandResult>> {
    return request<CommandResult>("POST", `/decisions/${encodeURIComponent(linkToken)}`);
  },
};
