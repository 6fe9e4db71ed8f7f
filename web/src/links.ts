// The addresses of the UI's places (hash routes: the API serves the page as a static file).

export const href = {
  list: "#/",
  approvals: "#/approvals",
  subscriptions: "#/subscriptions",
  detail: (id: string) => `#/workflows/${encodeURIComponent(id)}`,
};
