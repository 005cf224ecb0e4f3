// Small shared reactive state for the running app (filled by App.svelte from events).
import type { Status } from './api';

export const live = $state<{ status: Status | null; now: number }>({
  status: null,
  now: Date.now(),
});

export interface Notice {
  id: number;
  text: string;
  kind: 'info' | 'error';
}

export const notices = $state<{ items: Notice[] }>({ items: [] });
let nextNotice = 1;

/** A short message in the shell's live region; it goes away by itself. */
export function notify(text: string, kind: Notice['kind'] = 'info', ms = 6000): void {
  const id = nextNotice++;
  notices.items.push({ id, text, kind });
  setTimeout(() => dismiss(id), ms);
}

export function dismiss(id: number): void {
  const i = notices.items.findIndex((n) => n.id === id);
  if (i >= 0) notices.items.splice(i, 1);
}

// ---------------------------------------------------------------- setup banner

/**
 * The one-time "add another computer" banner after setup. A UI preference, kept in the
 * webview's localStorage: "show" once the wizard finished, "dismissed" once closed.
 */
const SETUP_BANNER_KEY = 'can-sync.setup-banner';

function readSetupBanner(): boolean {
  try {
    return localStorage.getItem(SETUP_BANNER_KEY) === 'show';
  } catch {
    return false;
  }
}

function writeSetupBanner(value: 'show' | 'dismissed'): void {
  try {
    localStorage.setItem(SETUP_BANNER_KEY, value);
  } catch {
    /* storage unavailable: the banner then lasts for this window only */
  }
}

export const setupBanner = $state<{ visible: boolean }>({ visible: readSetupBanner() });

/** The wizard just finished: show the banner (until dismissed, across restarts). */
export function showSetupBanner(): void {
  writeSetupBanner('show');
  setupBanner.visible = true;
}

export function dismissSetupBanner(): void {
  writeSetupBanner('dismissed');
  setupBanner.visible = false;
}
