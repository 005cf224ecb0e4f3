// Test harness: serves ui/dist, drives headless Debian Chromium through playwright-core, and
// replaces Tauri's IPC with a fake backend that lives in this (Node) process.
import { createServer, type Server } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const UI_TIMEOUT_MS = 5_000;
const DIST = resolve(fileURLToPath(new URL('.', import.meta.url)), '../dist');
const FAKE_TAURI = resolve(fileURLToPath(new URL('.', import.meta.url)), 'fake-tauri.js');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

// ---------------------------------------------------------------- static server

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

export async function startServer(): Promise<{ url: string; close: () => Promise<void> }> {
  try {
    await stat(join(DIST, 'index.html'));
  } catch {
    throw new Error(`${DIST}/index.html missing: run "npm run build" first`);
  }
  const server: Server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = normalize(join(DIST, path === '/' ? 'index.html' : path));
    if (!file.startsWith(DIST)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return {
    url: `http://127.0.0.1:${addr.port}/`,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

/**
 * One browser and one server per process, shared by every suite, closed by a root-level
 * after() hook (registered by each suite module; closing twice is a no-op).
 */
let shared: Promise<{ browser: Browser; server: Awaited<ReturnType<typeof startServer>> }> | null = null;

export function sharedEnv() {
  shared ??= Promise.all([launchBrowser(), startServer()]).then(([browser, server]) => ({ browser, server }));
  return shared;
}

export async function closeSharedEnv(): Promise<void> {
  const s = shared;
  shared = null;
  if (!s) return;
  const { browser, server } = await s;
  await browser.close();
  await server.close();
}

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    timeout: 15_000,
  });
}

// ---------------------------------------------------------------- fake backend

export interface AppErrorLike {
  code: string;
  message: string;
}

export function appError(code: string, message: string): AppErrorLike {
  return { code, message };
}

type Args = Record<string, any>;
export type Handler = (args: Args) => unknown;

export interface Call {
  cmd: string;
  args: Args;
}

type InvokeResult = { ok: true; value: unknown } | { ok: false; error: AppErrorLike };

export class FakeBackend {
  readonly calls: Call[] = [];
  readonly unhandled: string[] = [];
  handlers: Record<string, Handler>;
  page!: Page;

  constructor(overrides: Record<string, Handler> = {}) {
    this.handlers = { ...defaultHandlers(), ...overrides };
  }

  /** Args of every call of `cmd`, in order. */
  callsOf(cmd: string): Args[] {
    return this.calls.filter((c) => c.cmd === cmd).map((c) => c.args);
  }

  async handle(cmd: string, args: Args): Promise<InvokeResult> {
    this.calls.push({ cmd, args });
    const h = this.handlers[cmd];
    if (!h) {
      this.unhandled.push(cmd);
      return { ok: false, error: appError('not_found', `fake backend: no handler for ${cmd}`) };
    }
    try {
      const value = await h(args);
      return { ok: true, value: value === undefined ? null : value };
    } catch (e) {
      const err = e as Partial<AppErrorLike>;
      return {
        ok: false,
        error:
          typeof err?.code === 'string' && typeof err?.message === 'string'
            ? { code: err.code, message: err.message }
            : appError('engine', String(e)),
      };
    }
  }

  /** Fires a Tauri event into the page once the UI listens for it. */
  async emit(event: string, payload: unknown): Promise<void> {
    // Plain-string expressions: functions compiled by tsx cannot always be serialised to the page.
    await this.page.waitForFunction(`window.__fake.hasListener(${JSON.stringify(event)})`, undefined, {
      timeout: UI_TIMEOUT_MS,
    });
    const delivered = await this.page.evaluate(
      `window.__fake.emit(${JSON.stringify(event)}, ${JSON.stringify(payload)})`,
    );
    if (delivered === 0) throw new Error(`event ${event} had no listener`);
  }
}

export async function openApp(
  browser: Browser,
  baseUrl: string,
  backend: FakeBackend,
): Promise<{ page: Page; context: BrowserContext }> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(UI_TIMEOUT_MS);
  backend.page = page;
  page.on('pageerror', (e) => {
    backend.unhandled.push(`pageerror: ${e.message}`);
  });
  await page.exposeFunction('__fakeInvoke', (cmd: string, args: Args) => backend.handle(cmd, args));
  await page.addInitScript({ path: FAKE_TAURI });
  await page.goto(baseUrl);
  return { page, context };
}

// ---------------------------------------------------------------- suites

export interface App {
  /** Opens the app on `backend` in a new browser context, closed after the test. */
  open(backend: FakeBackend): Promise<{ page: Page; context: BrowserContext }>;
  /** Opens the app on a FakeBackend with these handlers over the defaults. */
  start(over?: Record<string, Handler>): Promise<{ page: Page; backend: FakeBackend; context: BrowserContext }>;
}

/**
 * A suite of UI tests: `describe(name)` on the shared browser and server, each test's
 * browser contexts closed after it, and the shared browser closed once the process's tests
 * are done (a root-level hook; registering it again is harmless).
 */
export function appSuite(name: string, body: (app: App) => void): void {
  after(closeSharedEnv);
  describe(name, () => {
    let env: Awaited<ReturnType<typeof sharedEnv>>;
    const contexts: BrowserContext[] = [];
    before(async () => {
      env = await sharedEnv();
    });
    afterEach(async () => {
      for (const c of contexts.splice(0)) await c.close();
    });
    const app: App = {
      async open(backend) {
        const opened = await openApp(env.browser, env.server.url, backend);
        contexts.push(opened.context);
        return opened;
      },
      async start(over = {}) {
        const backend = new FakeBackend(over);
        return { ...(await app.open(backend)), backend };
      },
    };
    body(app);
  });
}

// ---------------------------------------------------------------- assertions

/** Retries `check` (an assertion) until it passes or the time is up. */
export async function eventually(check: () => unknown, timeoutMs = UI_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

// ---------------------------------------------------------------- fixtures

export const ENDPOINT_SELF = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';

export function runningState(over: Args = {}) {
  return {
    phase: 'running',
    error: null,
    store: { kind: 'builtin', url: 'http://127.0.0.1:3210' },
    paused: false,
    paused_reason: null,
    ...over,
  };
}

/** The Settings a fresh device answers. */
export function settingsView(over: Args = {}) {
  return {
    notifications: true,
    launch_at_login: false,
    start_hidden: false,
    device_name: 'Desk',
    store: { kind: 'builtin', url: 'http://127.0.0.1:3210' },
    upload_limit: null,
    download_limit: null,
    limit_lan: false,
    pause_on_metered: false,
    pause_on_battery: false,
    ...over,
  };
}

export function peer(n: number, over: Args = {}) {
  return {
    endpoint_id: `${n}`.repeat(8) + 'feedbeefcafe0000000000000000000000000000000000000000000000',
    device_name: `Peer ${n}`,
    path: 'direct',
    rtt_ms: 20 + n,
    assets_sent: 10 * n,
    assets_received: 100 * n,
    bytes_sent: 1_500_000 * n,
    bytes_received: 2_500 * n,
    last_activity: new Date(Date.now() - 3 * 60_000).toISOString(),
    ...over,
  };
}

export function status(over: Args = {}) {
  return {
    endpoint_id: ENDPOINT_SELF,
    device_name: 'Desk',
    paused: false,
    store_online: true,
    local_assets: 1234,
    pending: 0,
    in_flight: 0,
    peers: [],
    assets_sent: 0,
    assets_received: 0,
    bytes_sent: 0,
    bytes_received: 0,
    last_error: null,
    transfers: [],
    bytes_left: 0,
    download_rate: 0,
    upload_rate: 0,
    ...over,
  };
}

/** A TransferStatus: transfer(1) downloads 40 of 100 MB from Peer 1 at 2 MB/s. */
export function transfer(n: number, over: Args = {}) {
  return {
    hash: `${n}`.repeat(64).slice(0, 64),
    name: `video-${n}.mp4`,
    peer: peer(n).endpoint_id,
    device_name: `Peer ${n}`,
    direction: 'download',
    bytes_done: 40_000_000,
    bytes_total: 100_000_000,
    rate_bytes_per_sec: 2_000_000,
    eta_secs: 30,
    ...over,
  };
}

/** A `history` handler that filters and pages `items` as the backend does. */
export function historyOf(items: ReturnType<typeof historyItem>[]): Handler {
  return ({ query }) => {
    const hits = items.filter(
      (it) =>
        (query.direction === 'all' || it.direction === query.direction) &&
        it.name.toLowerCase().includes(query.text.toLowerCase()),
    );
    const newest_id = items.reduce((m, it) => Math.max(m, it.id), 0);
    return { items: hits.slice(query.offset, query.offset + query.limit), total: hits.length, newest_id };
  };
}

export function historyItem(id: number, over: Args = {}) {
  return {
    id,
    time: new Date(Date.UTC(2025, 0, 1, 12, 0, 0) + id * 60_000).toISOString(),
    hash: `h${id}`.padEnd(64, '0'),
    name: `file-${id}.jpg`,
    size: 1000 * id,
    direction: id % 2 === 0 ? 'sent' : 'received',
    peer_id: 'f'.repeat(64),
    peer_name: 'Laptop',
    ...over,
  };
}

/** An UpdateState: updates on, nothing found yet. */
export function updateState(over: Args = {}) {
  return { enabled: true, reason: null, current_version: '0.1.0', available: null, ...over };
}

function defaultHandlers(): Record<string, Handler> {
  return {
    app_state: () => runningState(),
    status: () => status(),
    pairing: () => ({ device_name: 'Desk', endpoint_id: ENDPOINT_SELF, ticket: 'endpointticketAAAA' }),
    settings: () => settingsView(),
    history: () => ({ items: [], total: 0, newest_id: 0 }),
    pause: () => null,
    resume: () => null,
    update_state: () => updateState(),
    ui_view: () => null,
    set_ui_view: () => null,
    throughput: () => [],
  };
}
