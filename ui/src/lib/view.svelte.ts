// What the main window shows (its page, History's filter), kept by the backend as well:
// closing the window destroys the webview, and the next one opens where this one was
// (docs/app-ipc.md, `ui_view` / `set_ui_view`).
import { api, type UiPage, type UiView } from './api';

/** The backend refuses longer filters; a longer one is kept cut (it is a convenience). */
const MAX_FILTER_CHARS = 200;

function initial(): UiView {
  return { page: 'peers', history: { text: '', direction: 'all', offset: 0 } };
}

export const view = $state<UiView>(initial());

/** Reads the last window's view, once at start; without one (or on failure) the default stays. */
export async function restoreView(): Promise<void> {
  try {
    const v = await api.uiView();
    if (v) {
      view.page = v.page;
      view.history = { ...v.history };
    }
  } catch {
    /* an older backend: open on the default page */
  }
}

export function showPage(page: UiPage): void {
  if (view.page === page) return;
  view.page = page;
  save();
}

export function setHistoryView(h: UiView['history']): void {
  const next = { ...h, text: [...h.text].slice(0, MAX_FILTER_CHARS).join('') };
  const cur = view.history;
  if (cur.text === next.text && cur.direction === next.direction && cur.offset === next.offset) return;
  view.history = next;
  save();
}

/** Setup starts over (first run, reset): Peers, no filter. */
export function resetView(): void {
  const fresh = initial();
  const h = view.history;
  if (view.page === fresh.page && h.text === '' && h.direction === 'all' && h.offset === 0) return;
  view.page = fresh.page;
  view.history = fresh.history;
  save();
}

function save(): void {
  // Best effort: a refused or failed save only means the next window opens on the default.
  api.setUiView($state.snapshot(view)).catch(() => {});
}
