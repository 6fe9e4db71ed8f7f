import { createApp } from "vue";
import App from "./App.vue";
import { ApiError, api } from "./api";
import { identity, takeTokenFromAddress } from "./auth";
import { learnEnvelope } from "./format";
import { live } from "./live";
import { createAppRouter } from "./router";
import { loadWorkflows, refreshWorkflow } from "./store";
import "./style.css";
import { loadTypes } from "./workflowTypes";

const API_RETRY_MS = 1000;

// A sign-in link opened on this page (`#token=…`): start again as that person.
takeTokenFromAddress();
window.addEventListener("hashchange", () => takeTokenFromAddress() && location.reload());

/** Who the token is (the API answers even without one when it runs open); null when it is refused (401), and the
 * page then shows the sign-in form. While the API cannot be reached, it asks again. */
async function whoAmI(): Promise<void> {
  for (;;) {
    try {
      identity.value = await api.me();
      return;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      await new Promise((resolve) => setTimeout(resolve, API_RETRY_MS));
    }
  }
}

async function start(): Promise<void> {
  await whoAmI();
  if (!identity.value) return;
  await api
    .config()
    .then((config) => learnEnvelope(config.event_envelope))
    .catch(() => undefined); // the details then show the envelope too, until the next load
  // Each event names a workflow whose view is behind: fetch it until it has folded that event in.
  live.onEvent(({ sequence, event }) => refreshWorkflow(event.workflow_id, sequence));
  // On every (re)connection: the types may have changed, and a fresh list costs one request.
  live.onOpen(() => {
    void loadTypes();
    loadWorkflows().catch(() => undefined);
  });
  void loadTypes();
  live.start();
}

createApp(App).use(createAppRouter()).mount("#app");
void start();
