// App updates as the UI shows them: the backend checks the feed itself (at start, then daily)
// and says so with `update-available`; the UI reads `update_state` once and follows the event.
import { api, toAppError, type UpdateInfo, type UpdateState } from './api';

export const updates = $state<{
  state: UpdateState | null;
  /** The version whose banner was closed with Later (this window only; Settings still shows it). */
  dismissed: string | null;
  installing: boolean;
  /** The last install's error, for the version it was about. */
  error: string | null;
  checking: boolean;
  /** The last "Check for updates" click's outcome, and whether it failed. */
  checkMessage: string | null;
  checkFailed: boolean;
}>({
  state: null,
  dismissed: null,
  installing: false,
  error: null,
  checking: false,
  checkMessage: null,
  checkFailed: false,
});

function announce(info: UpdateInfo): void {
  const s = updates.state;
  if (s?.available?.version !== info.version) updates.error = null;
  updates.state = {
    enabled: s?.enabled ?? true,
    reason: s?.reason ?? null,
    current_version: s?.current_version ?? '',
    available: info,
  };
}

/** Reads the state once and follows `update-available`; returns the unlisten. */
export function followUpdates(): () => void {
  let heard = false;
  const unlisten = api.onUpdateAvailable((info) => {
    heard = true;
    announce(info);
  });
  api
    .updateState()
    .then((s) => {
      // An event that came first is at least as new as this answer.
      const available = heard ? (updates.state?.available ?? s.available) : s.available;
      updates.state = { ...s, available };
    })
    .catch(() => {
      /* no backend: nothing to show */
    });
  return unlisten;
}

/** The banner's and Settings' Install: on success the app restarts into the new version. */
export async function installUpdate(): Promise<void> {
  updates.installing = true;
  updates.error = null;
  try {
    await api.installUpdate();
    // The backend restarts the app now; keep the button disabled until it does.
  } catch (e) {
    updates.error = toAppError(e).message;
    updates.installing = false;
  }
}

export async function checkForUpdates(): Promise<void> {
  updates.checking = true;
  updates.checkMessage = null;
  updates.checkFailed = false;
  try {
    const s = await api.checkUpdate();
    updates.state = s;
    if (!s.available) updates.checkMessage = 'CAN Sync is up to date.';
  } catch (e) {
    updates.checkMessage = toAppError(e).message;
    updates.checkFailed = true;
  } finally {
    updates.checking = false;
  }
}

export function dismissUpdate(): void {
  updates.dismissed = updates.state?.available?.version ?? null;
}
