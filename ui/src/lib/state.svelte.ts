// Small shared reactive state for the running app (filled by App.svelte from events).
import type { EngineEvent, HeldDeletions, RateSample, Status } from './api';

export type { RateSample };

export const live = $state<{ status: Status | null; now: number }>({
  status: null,
  now: Date.now(),
});

// ---------------------------------------------------------------- held deletions

/**
 * Deletions from other devices the mass-deletion guard holds (the banner): from each status,
 * and at once from the engine's `mass_delete_held` / `mass_delete_released` events.
 */
export const deletions = $state<{ held: HeldDeletions | null }>({ held: null });

/** An engine event that says what the guard holds now (others are ignored). */
export function followDeletionEvent(e: EngineEvent): void {
  if (e.event === 'mass_delete_held') {
    const count = typeof e.count === 'number' ? e.count : 0;
    const sample = Array.isArray(e.sample) ? e.sample.filter((x): x is string => typeof x === 'string') : [];
    deletions.held = { count, sample };
  } else if (e.event === 'mass_delete_released') {
    deletions.held = null;
  }
}

// ---------------------------------------------------------------- throughput

/** The throughput chart's window. */
export const THROUGHPUT_WINDOW_MS = 10 * 60_000;
/** At most one sample a second, so at most 600 in the window. */
export const SAMPLE_MS = 1000;
export const MAX_SAMPLES = 600;

/** Samples of `download_rate`/`upload_rate`, oldest first, spanning the last 10 minutes. */
export const throughput = $state<{ samples: RateSample[] }>({ samples: [] });

function rate(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}

// ---------------------------------------------------------------- hidden page

/**
 * While the page is hidden (a minimised or covered window) pushed statuses change nothing
 * reactive, so nothing re-renders: the newest status waits in `held`, and the samples go on
 * in a plain copy of the chart's list. Both are applied when the page shows again.
 */
let held: { status: Status; now: number } | null = null;
let hiddenSamples: RateSample[] | null = null;

function pageHidden(): boolean {
  return typeof document !== 'undefined' && document.visibilityState === 'hidden';
}

/** The samples to change: the chart's own, or the plain copy while the page is hidden. */
function samplesToChange(): RateSample[] {
  if (!pageHidden()) return throughput.samples;
  hiddenSamples ??= $state.snapshot(throughput.samples);
  return hiddenSamples;
}

/** The page shows again: what arrived while it was hidden, at once. */
function applyHeld(): void {
  if (pageHidden()) return;
  if (hiddenSamples) throughput.samples = hiddenSamples;
  if (held) {
    live.status = held.status;
    live.now = held.now;
    deletions.held = held.status.mass_delete_held;
  }
  hiddenSamples = null;
  held = null;
}

if (typeof document !== 'undefined') document.addEventListener('visibilitychange', applyHeld);

/**
 * A new engine status (the `status` command's answer or event): shown, and sampled; while
 * the page is hidden, kept and shown once it is visible again.
 */
export function recordStatus(s: Status, now: number = Date.now()): void {
  if (pageHidden()) held = { status: s, now };
  else {
    live.status = s;
    live.now = now;
    deletions.held = s.mass_delete_held;
  }
  const down = rate(s.download_rate);
  const up = rate(s.upload_rate);
  const samples = samplesToChange();
  const last = samples.at(-1);
  if (last && now - last.t < SAMPLE_MS && now >= last.t) {
    // Several events a second while something moves: the newest one stands for the second.
    last.down = down;
    last.up = up;
  } else {
    samples.push({ t: now, down, up });
  }
  // Keep the newest sample from before the window too: it says where the line starts.
  let drop = 0;
  while (drop < samples.length - 1 && samples[drop + 1].t <= now - THROUGHPUT_WINDOW_MS) drop++;
  drop = Math.max(drop, samples.length - MAX_SAMPLES);
  if (drop > 0) samples.splice(0, drop);
}

/**
 * A new window: the samples the backend kept from before it go in front of the page's own,
 * so the chart goes on where the last window's stopped.
 */
export function seedThroughput(older: RateSample[]): void {
  const own = samplesToChange();
  const first = own[0]?.t ?? Infinity;
  const seeded = [...older.filter((s) => s.t < first), ...own].slice(-MAX_SAMPLES);
  if (hiddenSamples) hiddenSamples = seeded;
  else throughput.samples = seeded;
}

/** The engine stopped (or the main window went away): forget its status and samples. */
export function clearStatus(): void {
  held = null;
  hiddenSamples = null;
  live.status = null;
  deletions.held = null;
  throughput.samples = [];
}

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
