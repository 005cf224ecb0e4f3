import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, BrowserContext } from 'playwright-core';
import { FakeBackend, closeSharedEnv, eventually, openApp, peer, sharedEnv, status } from './harness.ts';

after(closeSharedEnv);

describe('peers page', () => {
  let browser: Browser;
  let server: { url: string };
  let context: BrowserContext | undefined;

  before(async () => {
    ({ browser, server } = await sharedEnv());
  });
  afterEach(async () => {
    await context?.close();
    context = undefined;
  });

  it('follows status events: empty → one peer → two → one', { timeout: 20_000 }, async () => {
    const backend = new FakeBackend();
    const opened = await openApp(browser, server.url, backend);
    context = opened.context;
    const page = opened.page;
    const t = (id: string) => page.getByTestId(id);
    const rows = t('peer-row');

    // Initial `status` call: no peers.
    await t('page-peers').waitFor();
    await eventually(async () =>
      assert.equal(
        (await t('peers-empty').textContent())?.replace(/\s+/g, ' ').trim(),
        'No other devices yet. On your other computer, install CAN Sync and join with this passphrase (see Pairing).',
      ),
    );
    assert.equal(await t('status-line').textContent(), 'No peers');
    assert.equal(
      (await t('peers-summary').textContent())?.replace(/\s+/g, ' ').trim(),
      '1,234 local assets · 0 pending · 0 in flight',
    );

    const p1 = peer(1);
    const p2 = peer(2, { path: 'relay', rtt_ms: null, device_name: 'Workstation' });

    await backend.emit('status', status({ peers: [p1], pending: 3, in_flight: 1 }));
    await eventually(async () => assert.equal(await rows.count(), 1));
    const r1 = rows.first();
    assert.equal(await r1.getByTestId('peer-name').textContent(), 'Peer 1');
    assert.equal(await r1.getByTestId('peer-id').textContent(), p1.endpoint_id.slice(0, 10));
    assert.equal(await r1.getByTestId('peer-path').textContent(), 'Direct');
    assert.equal(await r1.getByTestId('peer-rtt').textContent(), '21 ms');
    assert.equal(await r1.getByTestId('peer-state').textContent(), 'Connected');
    assert.equal((await r1.getByTestId('peer-assets').textContent())?.replace(/\s+/g, ' ').trim(), '10 / 100');
    assert.equal((await r1.getByTestId('peer-bytes').textContent())?.replace(/\s+/g, ' ').trim(), '1.5 MB / 2.5 KB');
    assert.equal(await r1.getByTestId('peer-last-activity').textContent(), '3 min ago');
    assert.equal(await t('status-line').textContent(), 'Syncing…');
    assert.equal(
      (await t('peers-summary').textContent())?.replace(/\s+/g, ' ').trim(),
      '1,234 local assets · 3 pending · 1 in flight',
    );
    assert.equal(await t('peers-empty').count(), 0);

    await backend.emit('status', status({ peers: [p1, p2] }));
    await eventually(async () => assert.equal(await rows.count(), 2));
    const r2 = page.locator(`[data-testid="peer-row"][data-peer-id="${p2.endpoint_id}"]`);
    assert.equal(await r2.getByTestId('peer-name').textContent(), 'Workstation');
    assert.equal(await r2.getByTestId('peer-path').textContent(), 'Relay');
    assert.equal(await r2.getByTestId('peer-rtt').textContent(), '–');
    assert.equal(await t('status-line').textContent(), 'Up to date · 2 peers');

    await backend.emit('status', status({ peers: [p2] }));
    await eventually(async () => assert.equal(await rows.count(), 1));
    assert.equal(await rows.first().getAttribute('data-peer-id'), p2.endpoint_id);
    assert.equal(await t('status-line').textContent(), 'Up to date · 1 peer');

    await backend.emit('status', status({ peers: [p2], store_online: false }));
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Store offline'));

    // The UI never polls: one status call, everything else came from events.
    assert.equal(backend.callsOf('status').length, 1);
    assert.deepEqual(backend.unhandled, []);
  });
});
