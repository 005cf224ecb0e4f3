import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { appSuite, eventually, FakeBackend, historyItem, historyOf, runningState, type Handler } from './harness.ts';

// 312 items, newest (highest id) first; odd ids received, even ids sent.
const ALL = Array.from({ length: 312 }, (_, i) => historyItem(312 - i));

appSuite('history page', (app) => {
  async function start(over: Record<string, Handler> = {}): Promise<{ page: Page; backend: FakeBackend }> {
    const { page, backend } = await app.start({ history: historyOf(ALL), ...over });
    await page.getByTestId('nav-history').click();
    await page.getByTestId('page-history').waitFor();
    return { page, backend };
  }

  it('filters, pages and prepends live items', { timeout: 30_000 }, async () => {
    const { page, backend } = await start();
    const t = (id: string) => page.getByTestId(id);
    const rows = t('history-row');
    const range = async () => (await t('history-range').textContent())?.trim();
    const firstId = async () => rows.first().getAttribute('data-history-id');

    await eventually(async () => assert.equal(await range(), '1–50 of 312'));
    assert.equal(await rows.count(), 50);
    assert.equal(await firstId(), '312');
    assert.equal(await t('history-prev').isDisabled(), true);

    await t('history-next').click();
    await eventually(async () => assert.equal(await range(), '51–100 of 312'));
    assert.equal(await firstId(), '262');
    await t('history-next').click();
    await eventually(async () => assert.equal(await range(), '101–150 of 312'));
    await t('history-prev').click();
    await eventually(async () => assert.equal(await range(), '51–100 of 312'));

    // Text filter (debounced) goes back to the first page.
    await t('history-filter').fill('file-1');
    await eventually(async () => assert.equal(await range(), '1–50 of 111'));
    // Direction filter keeps the text.
    await t('history-direction').selectOption('sent');
    await eventually(async () => assert.equal(await range(), '1–50 of 55'));
    assert.equal(await firstId(), '198');

    assert.deepEqual(backend.callsOf('history'), [
      { query: { text: '', direction: 'all', offset: 0, limit: 50 } },
      { query: { text: '', direction: 'all', offset: 50, limit: 50 } },
      { query: { text: '', direction: 'all', offset: 100, limit: 50 } },
      { query: { text: '', direction: 'all', offset: 50, limit: 50 } },
      { query: { text: 'file-1', direction: 'all', offset: 0, limit: 50 } },
      { query: { text: 'file-1', direction: 'sent', offset: 0, limit: 50 } },
    ]);

    // A matching history-added event is prepended and bumps the total.
    await backend.emit('history-added', historyItem(400, { name: 'file-1-new.png', direction: 'sent' }));
    await eventually(async () => assert.equal(await firstId(), '400'));
    assert.equal(await range(), '1–50 of 56');
    assert.equal(await rows.count(), 50);
    assert.equal(await rows.first().getByTestId('history-name').textContent(), 'file-1-new.png');

    // Not matching the filter (received): ignored.
    await backend.emit('history-added', historyItem(401, { name: 'file-1-in.png', direction: 'received' }));
    await backend.emit('history-added', historyItem(402, { name: 'other.png', direction: 'sent' }));
    await page.waitForTimeout(100);
    assert.equal(await firstId(), '400');
    assert.equal(await range(), '1–50 of 56');

    // On a later page: the total grows but the rows stay.
    await t('history-filter').fill('');
    await t('history-direction').selectOption('all');
    await eventually(async () => assert.equal(await range(), '1–50 of 312'));
    await t('history-next').click();
    await eventually(async () => assert.equal(await range(), '51–100 of 312'));
    await backend.emit('history-added', historyItem(403));
    await eventually(async () => assert.equal(await range(), '51–100 of 313'));
    assert.equal(await firstId(), '262');
    assert.deepEqual(backend.unhandled, []);
  });

  it('keeps rows written while a page was being read', { timeout: 30_000 }, async () => {
    // The backend's store: the answer is read when the call comes in, then held at a gate, so
    // rows written meanwhile reach the page only as history-added events.
    const rows = [...ALL];
    let open: () => void = () => {};
    let gate = new Promise<void>((r) => (open = r));
    const read = historyOf(rows);
    const { page, backend } = await app.start({
      history: async (args) => {
        const answer = read(args);
        await gate;
        return answer;
      },
    });
    const t = (id: string) => page.getByTestId(id);
    const range = async () => (await t('history-range').textContent())?.trim();
    const firstId = async () => t('history-row').first().getAttribute('data-history-id');
    const write = async (id: number) => {
      const item = historyItem(id);
      rows.unshift(item);
      await backend.emit('history-added', item);
    };
    const held = (n: number) => eventually(async () => assert.equal(backend.callsOf('history').length, n));

    await t('nav-history').click();
    await held(1);
    await write(313);
    // Already in the answer (written just before it was read): counted once.
    await backend.emit('history-added', historyItem(312));
    open();
    await eventually(async () => assert.equal(await range(), '1–50 of 313'));
    assert.equal(await firstId(), '313');

    // On a later page too: counted once (by the newest id the answer was read at), not
    // asked for again.
    gate = new Promise<void>((r) => (open = r));
    await t('history-next').click();
    await held(2);
    await write(314);
    await backend.emit('history-added', historyItem(313));
    open();
    await eventually(async () => assert.equal(await range(), '51–100 of 314'));
    assert.equal(await firstId(), '263');
    await page.waitForTimeout(200);
    assert.equal(backend.callsOf('history').length, 2);
    assert.equal(await range(), '51–100 of 314');
    assert.deepEqual(backend.unhandled, []);
  });

  it('built-in store: Open, Save…, Add files… and dropped files', { timeout: 20_000 }, async () => {
    const { page, backend } = await start({
      open_asset: () => ({ action: 'open', file_name: 'file-312.jpg', kind: 'a JPEG image', mime: 'image/jpeg' }),
      save_asset: () => true,
      pick_files: () => 2,
      add_files: ({ paths }) => paths.length,
    });
    const t = (id: string) => page.getByTestId(id);
    const first = t('history-row').first();
    await first.waitFor();

    await first.getByTestId('history-open').click();
    await first.getByTestId('history-save').click();
    await eventually(async () => assert.match((await t('notices').textContent()) ?? '', /Saved file-312\.jpg\./));
    assert.deepEqual(backend.callsOf('open_asset'), [{ hash: ALL[0].hash }]);
    assert.deepEqual(backend.callsOf('save_asset'), [{ hash: ALL[0].hash }]);
    assert.equal(await first.getByTestId('history-open').getAttribute('aria-label'), 'Open file-312.jpg');

    await t('add-files').click();
    await eventually(async () => assert.match((await t('notices').textContent()) ?? '', /Added 2 files to the store\./));
    assert.equal(backend.callsOf('pick_files').length, 1);
    assert.equal(await t('drop-note').textContent(), 'or drop files on this window');

    await backend.emit('tauri://drag-drop', { paths: ['/home/me/a.txt', '/home/me/b.txt'], position: { x: 5, y: 5 } });
    await eventually(async () =>
      assert.deepEqual(backend.callsOf('add_files'), [{ paths: ['/home/me/a.txt', '/home/me/b.txt'] }]),
    );
    assert.deepEqual(backend.unhandled, []);
  });

  it('Open on a risky type says what it really is and that it was only revealed', { timeout: 20_000 }, async () => {
    const disguised = historyItem(900, { name: 'invoice\u202Efdp.exe', direction: 'received' });
    const { page, backend } = await start({
      history: () => ({ items: [disguised], total: 1, newest_id: disguised.id }),
      open_asset: () => ({
        action: 'reveal',
        file_name: 'invoicefdp.exe',
        kind: 'a Windows program',
        mime: 'application/vnd.microsoft.portable-executable',
      }),
    });
    const t = (id: string) => page.getByTestId(id);
    // Shown without the right-to-left override: it cannot read as "invoiceexe.pdf".
    assert.equal(await t('history-name').first().textContent(), 'invoicefdp.exe');
    assert.equal(await t('history-open').first().getAttribute('aria-label'), 'Open invoicefdp.exe');
    await t('history-row').first().getByTestId('history-open').click();
    await eventually(async () =>
      assert.match(
        (await t('notices').textContent()) ?? '',
        /invoicefdp\.exe is a Windows program: CAN Sync does not open it\. It is shown in its folder instead\./,
      ),
    );
    assert.deepEqual(backend.callsOf('open_asset'), [{ hash: disguised.hash }]);
    assert.equal(await t('history-error').textContent(), '');
    assert.deepEqual(backend.unhandled, []);
  });

  it('external store: no file actions', { timeout: 20_000 }, async () => {
    const { page, backend } = await start({
      app_state: () => runningState({ store: { kind: 'external', url: 'http://10.0.0.5:3210' } }),
    });
    const t = (id: string) => page.getByTestId(id);
    await t('history-row').first().waitFor();
    assert.equal(await t('add-files').count(), 0);
    assert.equal(await t('history-open').count(), 0);
    assert.equal(await t('history-save').count(), 0);
    assert.deepEqual(backend.unhandled, []);
  });
});
