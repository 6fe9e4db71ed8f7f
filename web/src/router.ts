// The list (its filters and the archived view in the query), the pending approvals, one workflow, the notifications
// subscriptions, and a decision link's confirmation page.

import { createRouter, createWebHashHistory } from "vue-router";
import DecisionPage from "./components/DecisionPage.vue";
import PendingApprovals from "./components/PendingApprovals.vue";
import SubscriptionsPage from "./components/SubscriptionsPage.vue";
import WorkflowDetail from "./components/WorkflowDetail.vue";
import WorkflowList from "./components/WorkflowList.vue";

/** Made once the page has taken a sign-in token out of its address (`#token=…`, auth.ts): the router's history
 * rewrites the address as it starts. */
export const createAppRouter = () =>
  createRouter({
    history: createWebHashHistory(),
    routes: [
      { path: "/", name: "list", component: WorkflowList },
      { path: "/approvals", name: "approvals", component: PendingApprovals },
      { path: "/workflows/:id", name: "detail", component: WorkflowDetail, props: true },
      { path: "/subscriptions", name: "subscriptions", component: SubscriptionsPage },
      // A notification's one-click link: its token is its credential, so it opens without signing in.
      { path: "/decide/:token", name: "decide", component: DecisionPage, props: true },
      { path: "/:unknown(.*)*", redirect: "/" },
    ],
  });
