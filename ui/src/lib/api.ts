// The one module that talks to the Tauri backend. Types and names follow docs/app-ipc.md
// exactly; nothing else in the UI imports @tauri-apps/api.
import { invoke } from '@tauri-apps/api/core';
import { listen } from '@tauri-apps/api/event';
import { getCurrentWebview } from '@tauri-apps/api/webview';

// ---------------------------------------------------------------- errors

export type ErrorCode =
  | 'keychain_unavailable'
  | 'keychain_locked'
  | 'invalid_input'
  | 'weak_passphrase'
  | 'store_unreachable'
  | 'store_auth'
  | 'not_ready'
  | 'not_found'
  | 'engine'
  | 'io'
  | 'update'
  | 'update_signature';

export interface AppError {
  code: ErrorCode;
  message: string;
}

export function isAppError(e: unknown): e is AppError {
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof (e as AppError).code === 'string' &&
    typeof (e as AppError).message === 'string'
  );
}

/** Whatever a command rejected with, as an AppError (IPC failures become code "engine"). */
export function toAppError(e: unknown): AppError {
  if (isAppError(e)) return e;
  if (typeof e === 'string') return { code: 'engine', message: e };
  if (e instanceof Error) return { code: 'engine', message: e.message };
  return { code: 'engine', message: 'Unexpected error.' };
}

// ---------------------------------------------------------------- types

export type StoreChoice =
  | { kind: 'builtin' }
  | { kind: 'external'; url: string; api_key: string };

export type WizardStep = 'store' | 'passphrase' | 'device' | 'done';

export interface WizardView {
  step: WizardStep;
  store: { kind: 'builtin' } | { kind: 'external'; url: string } | null;
  device_name_default: string;
  passphrase_floor_bits: number;
  passphrase_recommended_bits: number;
}

export type WizardInput =
  | { step: 'store'; store: StoreChoice }
  | { step: 'passphrase'; passphrase: string; generated: boolean }
  | { step: 'device'; device_name: string }
  | { step: 'back' };

export interface PassphraseCheck {
  bits: number;
  verdict: 'refused' | 'weak' | 'ok';
  message: string;
}

export interface GeneratedPassphrase {
  passphrase: string;
  bits: number;
  words: number;
}

export interface StoreTest {
  asset_count: number;
}

export type StoreInfo = { kind: 'builtin'; url: string } | { kind: 'external'; url: string };

export type Phase = 'setup' | 'running' | 'error';

/** Why sync is paused: the user's own pause, or a condition the user chose to pause for. */
export type PausedReason = 'user' | 'metered' | 'battery';

export interface AppState {
  phase: Phase;
  error: AppError | null;
  store: StoreInfo | null;
  /** Paused for whatever reason. */
  paused: boolean;
  paused_reason: PausedReason | null;
}

export interface PeerStatus {
  endpoint_id: string;
  device_name: string;
  path: 'direct' | 'relay' | 'unknown';
  rtt_ms: number | null;
  assets_sent: number;
  assets_received: number;
  bytes_sent: number;
  bytes_received: number;
  last_activity: string;
}

/** One transfer in flight, either way. */
export interface TransferStatus {
  /** 64 hex digits. */
  hash: string;
  /** The asset's name: peer-chosen text, render as text only (see format.peerText). */
  name: string;
  /** The peer's endpoint id. */
  peer: string;
  /** The peer's device name ("" if unknown). */
  device_name: string;
  direction: 'download' | 'upload';
  bytes_done: number;
  bytes_total: number;
  /** Over the last few seconds. */
  rate_bytes_per_sec: number;
  /** null while the rate is 0. */
  eta_secs: number | null;
}

export interface Status {
  endpoint_id: string;
  device_name: string;
  paused: boolean;
  store_online: boolean;
  local_assets: number;
  pending: number;
  in_flight: number;
  peers: PeerStatus[];
  assets_sent: number;
  assets_received: number;
  bytes_sent: number;
  bytes_received: number;
  /** Content bytes that crossed, interrupted transfers included (not shown yet). */
  transfer_bytes_sent?: number;
  transfer_bytes_received?: number;
  last_error: string | null;
  /** In-flight transfers, downloads and uploads. */
  transfers: TransferStatus[];
  /** Bytes still to download for the in-flight transfers. */
  bytes_left: number;
  /** Bytes per second, all downloads, over the last few seconds. */
  download_rate: number;
  /** Bytes per second, all uploads, over the last few seconds. */
  upload_rate: number;
  /** Deleted assets whose content this device's store keeps in its trash, and their bytes. */
  trash_assets: number;
  trash_bytes: number;
  /** Deletions the store remembers (tombstones). */
  tombstones: number;
  /** Deletions from other devices the mass-deletion guard holds until the user answers. */
  mass_delete_held: HeldDeletions | null;
}

/** Deletions held by the mass-deletion guard (the banner's Apply / Keep mine). */
export interface HeldDeletions {
  count: number;
  /** Names (or short hashes) of the first few: peer-chosen text. */
  sample: string[];
  /** Deletions of the same burst applied before the guard tripped (Keep mine undoes them too). */
  applied?: number;
}

type ProgressField = 'transfers' | 'bytes_left' | 'download_rate' | 'upload_rate';
type DeletionField = 'trash_assets' | 'trash_bytes' | 'tombstones' | 'mass_delete_held';
/** A `Status` as received: an engine from before the progress or deletion fields leaves them out. */
type StatusWire = Omit<Status, ProgressField | DeletionField> &
  Partial<Pick<Status, ProgressField | DeletionField>>;

function fromWire(s: StatusWire): Status {
  return {
    ...s,
    transfers: s.transfers ?? [],
    bytes_left: s.bytes_left ?? 0,
    download_rate: s.download_rate ?? 0,
    upload_rate: s.upload_rate ?? 0,
    trash_assets: s.trash_assets ?? 0,
    trash_bytes: s.trash_bytes ?? 0,
    tombstones: s.tombstones ?? 0,
    mass_delete_held: s.mass_delete_held ?? null,
  };
}

export interface Pairing {
  device_name: string;
  endpoint_id: string;
  ticket: string;
}

/**
 * What a History row records: an asset received from or sent to a peer, or deleted or
 * restored (on this device, or by a peer's change). Called "direction" for history's sake.
 */
export type Direction = 'received' | 'sent' | 'deleted' | 'restored';

export interface HistoryItem {
  id: number;
  time: string;
  hash: string;
  name: string;
  size: number;
  direction: Direction;
  peer_id: string;
  peer_name: string;
}

export interface HistoryQuery {
  text: string;
  direction: 'all' | Direction;
  offset: number;
  limit: number;
}

export interface HistoryPage {
  items: HistoryItem[];
  total: number;
  /** The highest id in the whole history when the page was read (0: none). */
  newest_id: number;
}

export type RateUnit = 'KB/s' | 'MB/s';

/** A bandwidth limit: a whole number of KB/s or MB/s (1 KB = 1000 bytes). */
export interface RateLimit {
  amount: number;
  unit: RateUnit;
}

export interface Settings {
  notifications: boolean;
  launch_at_login: boolean;
  start_hidden: boolean;
  device_name: string;
  store: StoreInfo;
  /** null: unlimited. */
  upload_limit: RateLimit | null;
  download_limit: RateLimit | null;
  /** Also limit peers on the LAN (exempt when false). */
  limit_lan: boolean;
  pause_on_metered: boolean;
  pause_on_battery: boolean;
}

/** What may change; an absent field stays, a limit set to null is turned off. */
export type SettingsPatch = Partial<
  Pick<
    Settings,
    | 'notifications'
    | 'launch_at_login'
    | 'start_hidden'
    | 'upload_limit'
    | 'download_limit'
    | 'limit_lan'
    | 'pause_on_metered'
    | 'pause_on_battery'
  >
>;

/** Download and upload rates (bytes/s) as a status reported them at time `t` (ms since the epoch). */
export interface RateSample {
  t: number;
  down: number;
  up: number;
}

export type UiPage = 'pairing' | 'peers' | 'history' | 'trash' | 'settings';

/**
 * What the main window shows, kept by the backend: closing the window destroys the webview,
 * and the next one opens where this one was.
 */
export interface UiView {
  page: UiPage;
  history: { text: string; direction: 'all' | Direction; offset: number };
}

/** A deleted asset whose content this device's store keeps. */
export interface TrashItem {
  hash: string;
  /** Peer-chosen text: render as text only (see format.peerText). */
  name: string;
  size: number;
  content_type: string;
  /** When it was deleted, ms since the epoch. */
  deleted_at_ms: number;
  /** The device the deletion came from (this one's name when deleted here). */
  device_name: string;
  this_device: boolean;
}

/** This device's trash: the newest deletions (at most 500) and the whole trash's totals. */
export interface TrashView {
  items: TrashItem[];
  total_assets: number;
  total_bytes: number;
}

/** What `open_asset` did: opened with the default app, or (not an allow-listed type) revealed. */
export interface OpenResult {
  action: 'open' | 'reveal';
  file_name: string;
  /** The real type, for people: "a Windows program", "a PNG image". */
  kind: string;
  mime: string;
}

/** An update the release feed offers (the `update-available` event). */
export interface UpdateInfo {
  version: string;
  /** Release notes as the feed has them: show as text. */
  notes: string | null;
  /** RFC 3339. */
  date: string | null;
}

export interface UpdateState {
  /** This build updates itself (false: a .deb/.rpm install, or not from an installer). */
  enabled: boolean;
  /** Why not, for people. */
  reason: string | null;
  current_version: string;
  /** What the last check found. */
  available: UpdateInfo | null;
}

export interface EngineEvent {
  event: string;
  [key: string]: unknown;
}

export type Unlisten = () => void;

// ---------------------------------------------------------------- commands

function backendPresent(): boolean {
  const internals = (window as unknown as { __TAURI_INTERNALS__?: { invoke?: unknown } })
    .__TAURI_INTERNALS__;
  return typeof internals?.invoke === 'function';
}

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  if (!backendPresent()) {
    throw {
      code: 'engine',
      message: 'The CAN Sync backend is not available: this page only works inside the CAN Sync app.',
    } satisfies AppError;
  }
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    throw toAppError(e);
  }
}

export const api = {
  appState: () => call<AppState>('app_state'),
  retry: () => call<AppState>('retry'),
  wizardView: () => call<WizardView>('wizard_view'),
  wizardSubmit: (input: WizardInput) => call<WizardView>('wizard_submit', { input }),
  testStore: (url: string, apiKey: string) => call<StoreTest>('test_store', { url, apiKey }),
  generatePassphrase: () => call<GeneratedPassphrase>('generate_passphrase'),
  checkPassphrase: (passphrase: string) =>
    call<PassphraseCheck>('check_passphrase', { passphrase }),
  status: () => call<StatusWire>('status').then(fromWire),
  pause: () => call<null>('pause'),
  resume: () => call<null>('resume'),
  pairing: () => call<Pairing>('pairing'),
  /** The backend asks in a native dialog first; null if the user cancelled there. */
  revealPassphrase: () => call<string | null>('reveal_passphrase'),
  connectTicket: (ticket: string) => call<null>('connect_ticket', { ticket }),
  history: (query: HistoryQuery) => call<HistoryPage>('history', { query }),
  settings: () => call<Settings>('settings'),
  updateSettings: (patch: SettingsPatch) => call<Settings>('update_settings', { patch }),
  /** An external store is confirmed in a native dialog first; null if the user cancelled there. */
  setStore: (store: StoreChoice) => call<Settings | null>('set_store', { store }),
  changePassphrase: (passphrase: string) => call<null>('change_passphrase', { passphrase }),
  resetDevice: () => call<null>('reset_device'),
  addFiles: (paths: string[]) => call<number>('add_files', { paths }),
  pickFiles: () => call<number>('pick_files'),
  openAsset: (hash: string) => call<OpenResult>('open_asset', { hash }),
  saveAsset: (hash: string) => call<boolean>('save_asset', { hash }),
  /** Deletes the asset everywhere: into every device's trash (offline ones when they connect). */
  deleteAsset: (hash: string) => call<null>('delete_asset', { hash }),
  trash: () => call<TrashView>('trash'),
  /** Brings a trashed asset back, here and on every device. */
  restoreAsset: (hash: string) => call<null>('restore_asset', { hash }),
  /** Empties this device's trash for good (other devices keep theirs); how many went. */
  emptyTrash: () => call<number>('empty_trash'),
  /** Held deletions: apply them here (true), or keep ours and undo them everywhere (false). */
  releaseDeletions: (apply: boolean) => call<number>('release_deletions', { apply }),
  /** No network: whether updates are on and what the last check found. */
  updateState: () => call<UpdateState>('update_state'),
  checkUpdate: () => call<UpdateState>('check_update'),
  /** Downloads, verifies and installs the update; the app then restarts into it. */
  installUpdate: () => call<null>('install_update'),
  /** The last window's view; null until one was reported (each start of the app). */
  uiView: () => call<UiView | null>('ui_view'),
  setUiView: (view: UiView) => call<null>('set_ui_view', { view }),
  /** The throughput chart's samples the backend kept (the last 10 minutes), oldest first. */
  throughput: () => call<RateSample[]>('throughput'),

  // ------------------------------------------------------------ events
  onAppState: (cb: (s: AppState) => void) => on<AppState>('app-state', cb),
  onStatus: (cb: (s: Status) => void) => on<StatusWire>('status', (s) => cb(fromWire(s))),
  /**
   * `ready` runs once the subscription is in place (or failed): a page that reads history
   * after it misses no row written in between.
   */
  onHistoryAdded: (cb: (item: HistoryItem) => void, ready?: () => void) =>
    on<HistoryItem>('history-added', cb, ready),
  onEngineEvent: (cb: (e: EngineEvent) => void) => on<EngineEvent>('engine-event', cb),
  onUpdateAvailable: (cb: (u: UpdateInfo) => void) => on<UpdateInfo>('update-available', cb),

  /**
   * Files dropped on the window (Tauri's webview drag-drop event). `onHover` reports whether
   * files are being dragged over the window. Outside Tauri it logs a warning and does nothing.
   */
  onFileDrop(cb: (paths: string[]) => void, onHover?: (hovering: boolean) => void): Unlisten {
    return deferred((alive) =>
      getCurrentWebview().onDragDropEvent((event) => {
        if (!alive()) return;
        const p = event.payload;
        if (p.type === 'enter' || p.type === 'over') onHover?.(true);
        else if (p.type === 'leave') onHover?.(false);
        else if (p.type === 'drop') {
          onHover?.(false);
          if (p.paths.length > 0) cb(p.paths);
        }
      }),
    );
  },
};

/** listen() is async; hand back a synchronous unlisten that also works before it resolved. */
function on<T>(event: string, cb: (payload: T) => void, ready?: () => void): Unlisten {
  return deferred((alive) => listen<T>(event, (e) => alive() && cb(e.payload)), ready);
}

function deferred(start: (alive: () => boolean) => Promise<() => void>, ready?: () => void): Unlisten {
  let stopped = false;
  let stop: (() => void) | null = null;
  const alive = () => !stopped;
  Promise.resolve()
    .then(() => start(alive))
    .then((u) => {
      if (stopped) return (u as () => unknown)();
      stop = u;
      ready?.();
    })
    .catch((e: unknown) => {
      console.warn('CAN Sync: could not subscribe to an event', e);
      if (!stopped) ready?.();
    });
  return () => {
    stopped = true;
    const s = stop as (() => unknown) | null;
    stop = null;
    if (!s) return;
    // Tauri's unlisten functions are async; a window that is already gone must not surface
    // as an unhandled rejection.
    Promise.resolve()
      .then(s)
      .catch(() => {});
  };
}
