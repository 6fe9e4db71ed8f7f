// Workflow types as the server describes them (GET /types): buttons and diagrams come from here, so a new type needs
// no change in the UI. Without them the page can draw nothing and offers no command: it says why.

import { reactive, ref } from "vue";
import { api } from "./api";
import { COMMAND_KINDS, type CommandKind, type StateKind, type WorkflowTypeInfo, type WorkflowView } from "./model";

const types = reactive(new Map<string, WorkflowTypeInfo>()); // each type's latest version, by name
// Earlier versions that instances still run on, by "<name>.<version>", fetched once each (versions never change).
const versions = reactive(new Map<string, WorkflowTypeInfo | "loading">());
export const typesError = ref("");

/** Ask the server for its types (again on every reconnection: they may have changed). */
export async function loadTypes(): Promise<void> {
  try {
    const list = await api.types();
    types.clear();
    for (const info of list) types.set(info.name, info);
    typesError.value = "";
  } catch (error) {
    typesError.value = `Could not read the workflow types: ${(error as Error).message}`;
  }
}

export function typeInfo(name: string | null | undefined): WorkflowTypeInfo | undefined {
  return name ? types.get(name) : undefined;
}

export function allTypes(): WorkflowTypeInfo[] {
  return [...types.values()];
}

export function typeTitle(name: string | null | undefined): string {
  return typeInfo(name)?.title ?? name ?? "—";
}

/** The version of its type an instance runs on: the latest, or an earlier one (fetched on first use; until it has
 * come, undefined). */
export function instanceType(workflow: WorkflowView | null | undefined): WorkflowTypeInfo | undefined {
  if (!workflow?.type) return undefined;
  const latest = typeInfo(workflow.type);
  if (latest?.version === workflow.type_version) return latest;
  const key = `${workflow.type}.${workflow.type_version}`;
  const kept = versions.get(key);
  if (kept === undefined) {
    versions.set(key, "loading");
    api
      .typeVersion(workflow.type, workflow.type_version)
      .then((published) => versions.set(key, published.info))
      .catch(() => versions.delete(key));
  }
  return kept === "loading" ? undefined : kept;
}

function stateOf(workflow: WorkflowView) {
  return instanceType(workflow)?.states.find((state) => state.name === workflow.business_state);
}

export function stateKind(workflow: WorkflowView): StateKind | undefined {
  return stateOf(workflow)?.kind;
}

/** The commands the server takes now: its current state's `accepts`, except that a cancelled or terminated workflow
 * (it stays in its business state) can only be archived, and an archived one takes nothing. */
export function acceptedCommands(workflow: WorkflowView, { terminate = false } = {}): CommandKind[] {
  const accepts = workflow.archived ? [] : workflow.stopped ? ["archive"] : (stateOf(workflow)?.accepts ?? []);
  return COMMAND_KINDS.filter((kind) => accepts.includes(kind) && (terminate || kind !== "terminate"));
}

/** Names of the states, over every type, in which a workflow waits for `kind` (e.g. approve). */
export function statesAccepting(kind: CommandKind): string[] {
  return [...new Set(allTypes().flatMap((info) => info.states.filter((s) => s.accepts.includes(kind)).map((s) => s.name)))];
}

export function businessStateNames(): string[] {
  return [...new Set(allTypes().flatMap((info) => info.states.map((state) => state.name)))];
}
