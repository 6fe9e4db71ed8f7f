// The UI's copy of the read model: workflows by id, kept fresh by the live feed. The read model is the truth, so an
// event only says which workflow to fetch again, and from which sequence on its view is current.

import { reactive, ref } from "vue";
import { ApiError, api, type ListFilters, type Page } from "./api";
import { identity } from "./auth";
import type { CommandKind, CommandResult, WorkflowView } from "./model";

export const workflows = reactive(new Map<string, WorkflowView>());
export const inFlight = reactive(new Set<string>()); // workflows with a command on its way
export const commandErrors = reactive(new Map<string, string>()); // the server's last refusal, per workflow
export const commandNotices = reactive(new Map<string, string>());
export const now = ref(Date.now());
setInterval(() => (now.value = Date.now()), 1000);

/** Keep the newer of two views of a workflow: a late answer never rolls it back. */
export function remember(view: WorkflowView): void {
  const known = workflows.get(view.id);
  if (known && view.last_sequence < known.last_sequence) return;
  if (known && view.business_state !== known.business_state) commandNotices.delete(view.id); // it moved on
  workflows.set(view.id, view);
}

/** Load a page of a list into the store (the first, or the one `cursor` starts); the page, as the server found it. */
export async function loadWorkflows(filters: ListFilters = {}, cursor = ""): Promise<Page<WorkflowView>> {
  const page = await api.list(filters, cursor);
  page.items.forEach(remember);
  return page;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const wantedSequence = new Map<string, number>();

/** Fetch the workflow until its view has folded in event `sequence` (the read model is written just after the log),
 * a bounded number of times. Calls for a workflow already being fetched only raise the sequence it waits for. */
export function refreshWorkflow(id: string, sequence = 0): void {
  const fetching = wantedSequence.has(id);
  wantedSequence.set(id, Math.max(wantedSequence.get(id) ?? 0, sequence));
  if (fetching) return;
  void (async () => {
    try {
      for (let pause = 50; pause <= 3200; pause *= 2) {
        try {
          const view = await api.get(id);
          remember(view);
          if (view.last_sequence >= (wantedSequence.get(id) ?? 0)) return;
        } catch (error) {
          if (!(error instanceof ApiError)) throw error; // 404: not in the read model yet; 0: the API is away
        }
        await sleep(pause);
      }
    } finally {
      wantedSequence.delete(id);
    }
  })();
}

/** Send a command and show its outcome: the new view, or the server's reason for refusing it. Who approves or
 * rejects is the token's holder: the server records them, so the body names nobody. */
export async function sendCommand(id: string, kind: CommandKind, text = ""): Promise<boolean> {
  const who = identity.value?.name ?? "";
  const body: Partial<Record<CommandKind, Record<string, string>>> = {
    reject: { reason: text },
    cancel: { reason: text },
    terminate: { reason: text },
  };
  const before = workflows.get(id);
  inFlight.add(id);
  commandErrors.delete(id);
  commandNotices.delete(id);
  try {
    const { status, data } = await api.command(id, kind, body[kind]);
    if (data.workflow) remember(data.workflow);
    if (status === 202) commandNotices.set(id, `${kind} sent; no outcome yet, it may still apply`);
    else if (before && data.workflow?.business_state === before.business_state && kind === "approve")
      void noteRecorded(id, before.last_sequence, data, who);
    return true;
  } catch (error) {
    commandErrors.set(id, error instanceof ApiError ? error.detail : String(error));
    refreshWorkflow(id); // the refusal often means this page's view was behind
    return false;
  } finally {
    inFlight.delete(id);
  }
}

/** A command the state took without moving (one approval of a quorum): say so, with the log's note ("1 of 2"). */
async function noteRecorded(id: string, after: number, result: CommandResult, who: string): Promise<void> {
  const events = await api
    .events(id, after)
    .then((page) => page.items)
    .catch(() => []);
  const taken = events
    .map(({ event }) => event)
    .find((event) => event.causation_id === result.command_id && event.type === "InputRecorded");
  if (taken?.type === "InputRecorded") commandNotices.set(id, `${who}'s ${taken.command_kind} is recorded: ${taken.note}`);
}

export interface DialogRequest {
  title: string;
  message: string;
  confirmLabel: string;
  reasonLabel?: string; // ask for a reason as well
  danger?: boolean;
}
export const dialog = ref<(DialogRequest & { resolve: (answer: { reason: string } | null) => void }) | null>(null);

/** Ask the person to confirm; resolves to null when they decline. */
export function confirmWith(request: DialogRequest): Promise<{ reason: string } | null> {
  dialog.value?.resolve(null);
  return new Promise((resolve) => {
    dialog.value = { ...request, resolve };
  });
}
