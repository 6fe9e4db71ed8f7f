// Light or dark: as the system asks ("auto"), unless the person chose one here; the choice is remembered.

import { ref } from "vue";

export type Theme = "auto" | "light" | "dark";
const KEY = "wf-theme";
const THEMES: readonly Theme[] = ["auto", "dark", "light"];

function stored(): Theme {
  const value = localStorage.getItem(KEY);
  return value === "light" || value === "dark" ? value : "auto";
}

export const theme = ref<Theme>(stored());

const systemPrefersDark = window.matchMedia("(prefers-color-scheme: dark)");

/** The page's colours (style.css reads `data-theme` on <html>): the chosen theme, or the system's. */
function apply(chosen: Theme): void {
  const dark = chosen === "dark" || (chosen === "auto" && systemPrefersDark.matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
}
apply(theme.value);
systemPrefersDark.addEventListener("change", () => apply(theme.value));

/** The next theme in turn: auto → dark → light → auto. */
export function nextTheme(): void {
  theme.value = THEMES[(THEMES.indexOf(theme.value) + 1) % THEMES.length];
  if (theme.value === "auto") localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, theme.value);
  apply(theme.value);
}
