import { createApp } from "vue";
import App from "./App.vue";
import { live } from "./live";
import { loadWorkflows, refreshWorkflow } from "./store";
import "./style.css";
import { loadTypes } from "./workflowTypes";

// Each event names a workflow whose view is behind: fetch it until it has folded that event in.
live.onEvent(({ sequence, event }) => refreshWorkflow(event.workflow_id, sequence));
// On every (re)connection: the types may have changed, and a fresh list costs one request.
live.onOpen(() => {
  void loadTypes();
  loadWorkflows().catch(() => undefined);
});
void loadTypes();
live.start();

createApp(App).mount("#app");
