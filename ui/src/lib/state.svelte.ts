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
