// A hash router with three places: the list, the pending approvals and one workflow's detail.

import { ref } from "vue";

export type Route = { name: "list" } | { name: "approvals" } | { name: "detail"; id: string };

function parse(hash: string): Route {
  const [, place, id] = hash.replace(/^#/, "").split("/");
  if (place === "approvals") return { name: "approvals" };
  if (place === "workflows" && id) return { name: "detail", id: decodeURIComponent(id) };
  return { name: "list" };
}

export const route = ref<Route>(parse(location.hash));
window.addEventListener("hashchange", () => (route.value = parse(location.hash)));

export const href = {
  list: "#/",
  approvals: "#/approvals",
  detail: (id: string) => `#/workflows/${encodeURIComponent(id)}`,
};
