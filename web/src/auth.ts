// Who this page acts as: an API token, from the address's `#token=…` (the link `make run` prints) or pasted into the
// sign-in form, kept in this browser. Every request sends it as `Authorization: Bearer`; the WebSocket, which cannot
// carry headers, as `?token=`. Signing in or out reloads the page, so everything starts again as the new person.

import { ref } from "vue";

export interface Identity {
  name: string; // what the log records for this person's approvals and rejections
  roles: string[];
  groups: string[]; // a type's wait may take a command from a group
  authenticated: boolean; // false: the API runs open (WF_AUTH=off), without tokens
}

const STORED_TOKEN = "wf-token";

export const token = ref(localStorage.getItem(STORED_TOKEN) ?? "");
export const identity = ref<Identity | null>(null);
export const signedOut = ref(false); // the API refused the token, or there is none: the page asks for one
export const signInError = ref("");

/** Take a token from the address (`#token=…`), leaving the address without it; true when there was one. */
export function takeTokenFromAddress(): boolean {
  const found = /^#token=([^&]+)/.exec(location.hash);
  if (!found) return false;
  token.value = decodeURIComponent(found[1]);
  localStorage.setItem(STORED_TOKEN, token.value);
  signedOut.value = false;
  history.replaceState(null, "", `${location.pathname}${location.search}#/`);
  return true;
}

export function signIn(newToken: string): void {
  localStorage.setItem(STORED_TOKEN, newToken.trim());
  location.reload();
}

/** Forget the token; with a reason (the server refused it), the sign-in form says why. */
export function signOut(reason = ""): void {
  localStorage.removeItem(STORED_TOKEN);
  token.value = "";
  identity.value = null;
  signedOut.value = true;
  signInError.value = reason;
}
