// Closing the main window destroys the webview; the next one must open where the last one
// was (the backend keeps the view: ui_view / set_ui_view), and a hidden window must not tick.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { FakeBackend, appSuite, eventually, historyItem, historyOf, peer, status } from './harness.ts';

const ITEMS = Array.from({ length: 300 }, (_, i) =>
  historyItem(300 - i, { name: i % 3 ? `photo-${i}.jpg` : `doc-${i}.pdf` }),
);

const historyHandler = historyOf(ITEMS);

/** Makes `document.hidden` say `hidden` and fires visibilitychange, as a minimised window would. */
async function setHidden(page: Page, hidden: boolean): Promise<void> {
  await page.evaluate(`(() => {
    Object.defineProperty(document, 'hidden', { value: ${hidden}, configurable: true });
    Object.defineProperty(document, 'visibilityState', { value: '${hidden ? 'hidden' : 'visible'}', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  })()`);
}

appSuite('a recreated window', (app) => {
  const open = async (backend: FakeBackend): Promise<Page> => (await app.open(backend)).page;

  it('opens on the page and History filter the last window showed', { timeout: 30_000 }, async () => {
    // The backend's copy lives across windows, as in the app.
    let kept: unknown = null;
    const backend = new FakeBackend({
      history: historyHandler,
      ui_view: () => kept,
      set_ui_view: ({ view }) => {
        kept = view;
        return null;
      },
    });
    const first = await open(backend);
    const t1 = (id: string) => first.getByTestId(id);
    await t1('shell').waitFor();
    assert.equal(await t1('nav-peers').getAttribute('aria-current'), 'page', 'a first window opens on Peers');
    await t1('nav-history').click();
    await t1('history-filter').fill('photo');
    await t1('history-direction').selectOption('sent');
    await t1('history-next').click();
    await eventually(() =>
      assert.deepEqual(kept, { page: 'history', history: { text: 'photo', direction: 'sent', offset: 50 } }),
    );
    await first.context().close();

    // A new webview, as after Open CAN Sync from the tray.
    const before = backend.callsOf('history').length;
    const second = await open(backend);
    const t2 = (id: string) => second.getByTestId(id);
    await t2('page-history').waitFor();
    assert.equal(await t2('nav-history').getAttribute('aria-current'), 'page');
    assert.equal(await t2('history-filter').inputValue(), 'photo');
    assert.equal(await t2('history-direction').inputValue(), 'sent');
    await eventually(async () => assert.match((await t2('history-range').textContent()) ?? '', /^51–/));
    assert.deepEqual(backend.callsOf('history')[before], {
      query: { text: 'photo', direction: 'sent', offset: 50, limit: 50 },
    });
    assert.equal(await t2('nav-peers').getAttribute('aria-current'), null, 'Peers did not show first');

    // The page itself is kept too, and Peers is the default again only by choice.
    await t2('nav-pairing').click();
    await eventually(() => assert.equal((kept as { page: string }).page, 'pairing'));
    assert.deepEqual(backend.unhandled, []);
  });

  it("the throughput chart goes on from the backend's samples", { timeout: 20_000 }, async () => {
    const now = Date.now();
    // Two minutes of a download at 2 MB/s that the last window saw, a sample a second.
    const older = Array.from({ length: 120 }, (_, i) => ({ t: now - 180_000 + i * 1000, down: 2_000_000, up: 0 }));
    const backend = new FakeBackend({ throughput: () => older });
    const page = await open(backend);
    await page.getByTestId('page-peers').waitFor();
    const points = () =>
      page.evaluate(
        `document.querySelector('[data-testid=throughput-down]').getAttribute('points').trim().split(/\\s+/)`,
      ) as Promise<string[]>;
    // No status moved in this window, yet the line has the last window's two minutes.
    await eventually(async () => assert.ok((await points()).length >= 4, (await points()).join(' ')));
    const ys = new Set((await points()).map((p) => p.split(',')[1]));
    assert.ok(ys.size >= 2, 'the line rises above 0');
    assert.equal(backend.callsOf('throughput').length, 1);
  });

  it('an idle chart is the baseline across the whole width (nothing in it depends on the clock)', { timeout: 20_000 }, async () => {
    const backend = new FakeBackend({
      status: () => status({ peers: [peer(1)] }),
      throughput: () => [{ t: Date.now() - 60_000, down: 0, up: 0 }],
    });
    const page = await open(backend);
    await page.getByTestId('peer-name').waitFor();
    const baseline = '0.0,119.0 600.0,119.0';
    for (const id of ['throughput-down', 'throughput-up']) {
      await eventually(async () => assert.equal(await page.getByTestId(id).getAttribute('points'), baseline));
    }
  });

  it('a saved page beyond the rows left falls back to the first page', { timeout: 20_000 }, async () => {
    const backend = new FakeBackend({
      history: historyHandler,
      ui_view: () => ({ page: 'history', history: { text: '', direction: 'all', offset: 5000 } }),
    });
    const page = await open(backend);
    await eventually(async () => assert.equal((await page.getByTestId('history-range').textContent())?.trim(), '1–50 of 300'));
    assert.deepEqual(backend.callsOf('history').map((c) => c.query.offset), [5000, 0]);
  });

  it('no clock ticks while the window is hidden', { timeout: 20_000 }, async () => {
    const { page, backend } = await app.start({ status: () => status({ peers: [peer(1)] }) });
    // Counts the page's live intervals (installed before the app's scripts run).
    await page.addInitScript(`(() => {
      const live = (window.__liveIntervals = new Set());
      const set = window.setInterval.bind(window);
      const clear = window.clearInterval.bind(window);
      window.setInterval = (fn, ms, ...a) => { const id = set(fn, ms, ...a); live.add(id); return id; };
      window.clearInterval = (id) => { live.delete(id); clear(id); };
    })()`);
    await page.reload();
    await page.getByTestId('peer-name').waitFor();
    const intervals = () => page.evaluate('window.__liveIntervals.size') as Promise<number>;
    assert.equal(await intervals(), 1, 'the relative-time clock runs while shown');

    await setHidden(page, true);
    assert.equal(await intervals(), 0, 'nothing ticks while hidden');

    await setHidden(page, false);
    assert.equal(await intervals(), 1);
    assert.deepEqual(backend.unhandled, []);
  });

  it('a hidden window renders no pushed status; the newest shows once visible', { timeout: 20_000 }, async () => {
    const { page, backend } = await app.start({ status: () => status({ peers: [peer(1)] }) });
    const t = (id: string) => page.getByTestId(id);
    const baseline = '0.0,119.0 600.0,119.0';
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Up to date · 1 peer'));
    assert.equal(await t('throughput-down').getAttribute('points'), baseline);

    await setHidden(page, true);
    // Counts every change to the page from here on.
    await page.evaluate(`(() => {
      window.__mutations = 0;
      new MutationObserver((ms) => (window.__mutations += ms.length)).observe(document.body, {
        subtree: true, childList: true, attributes: true, characterData: true,
      });
    })()`);
    // A download while hidden, then (over a second later: another sample) the newest status.
    await backend.emit('status', status({ peers: [peer(1), peer(2)], download_rate: 2_000_000 }));
    await page.waitForTimeout(1100);
    await backend.emit('status', status({ peers: [peer(1), peer(2), peer(3)] }));
    await page.waitForTimeout(100);
    assert.equal(await page.evaluate('window.__mutations'), 0, 'nothing re-rendered while hidden');
    assert.equal(await t('peer-row').count(), 1);
    assert.equal(await t('status-line').textContent(), 'Up to date · 1 peer');

    await setHidden(page, false);
    await eventually(async () => assert.equal(await t('peer-row').count(), 3));
    assert.equal(await t('status-line').textContent(), 'Up to date · 3 peers');
    // The sample taken while hidden is kept: the line rises above the baseline.
    assert.notEqual(await t('throughput-down').getAttribute('points'), baseline);
    assert.deepEqual(backend.unhandled, []);
  });
});
