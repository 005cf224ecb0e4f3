import { it } from 'node:test';
import assert from 'node:assert/strict';
import { appSuite, eventually, peer, status, transfer } from './harness.ts';

appSuite('peers page', (app) => {
  it('follows status events: empty → one peer → two → one', { timeout: 20_000 }, async () => {
    const { page, backend } = await app.start();
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
    assert.equal(await t('status-line').textContent(), 'Syncing 3 assets', 'no bytes or rate known: counts only');
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

  it('transfers: progress, rate, time left, throughput chart, header', { timeout: 20_000 }, async () => {
    const p1 = peer(1);
    const { page, backend } = await app.start({ status: () => status({ peers: [p1] }) });
    const t = (id: string) => page.getByTestId(id);

    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Up to date · 1 peer'));
    assert.equal(await t('transfers-empty').textContent(), 'Nothing is being transferred right now.');
    // Before anything moved: the chart is there, flat.
    await t('throughput-chart').waitFor();

    const down = transfer(1, {
      name: 'invoice\u202Efdp.exe',
      bytes_done: 40_000_000,
      bytes_total: 100_000_000,
      rate_bytes_per_sec: 3_200_000,
      eta_secs: 19,
    });
    const up = transfer(2, {
      peer: 'c'.repeat(64),
      device_name: '',
      direction: 'upload',
      bytes_done: 5_000,
      bytes_total: 10_000,
      rate_bytes_per_sec: 0,
      eta_secs: null,
    });
    const moving = status({
      peers: [p1],
      pending: 3,
      in_flight: 3,
      transfers: [down, up],
      bytes_left: 1_200_000_000,
      download_rate: 10_000_000,
      upload_rate: 250_000,
    });
    await backend.emit('status', moving);

    // Header: N = pending (in-flight assets are among them), bytes left, time from bytes_left / download_rate.
    await eventually(async () =>
      assert.equal(await t('status-line').textContent(), 'Syncing 3 assets · 1.2 GB left · about 2 min'),
    );

    const rows = t('transfer');
    assert.equal(await rows.count(), 2);
    const r1 = rows.nth(0);
    assert.equal(await r1.getAttribute('data-direction'), 'download');
    assert.equal(await r1.getByTestId('transfer-direction').getAttribute('aria-label'), 'Download');
    assert.equal(await r1.getByTestId('transfer-direction').textContent(), '↓');
    assert.equal(await r1.getByTestId('transfer-name').textContent(), 'invoicefdp.exe', 'format characters removed');
    assert.equal(await r1.getByTestId('transfer-peer').textContent(), 'from Peer 1');
    const bar1 = r1.getByTestId('transfer-progress');
    assert.equal(await bar1.getAttribute('value'), '40000000');
    assert.equal(await bar1.getAttribute('max'), '100000000');
    assert.equal(await bar1.evaluate((el) => (el as HTMLProgressElement).position), 0.4);
    assert.equal(await r1.getByTestId('transfer-bytes').textContent(), '40 MB\u00a0of 100 MB');
    assert.equal(await r1.getByTestId('transfer-rate').textContent(), '3.2 MB/s');
    assert.equal(await r1.getByTestId('transfer-eta').textContent(), 'less than a minute');

    const r2 = rows.nth(1);
    assert.equal(await r2.getByTestId('transfer-direction').textContent(), '↑');
    assert.equal(await r2.getByTestId('transfer-peer').textContent(), 'to cccccccccc', 'no device name: short id');
    assert.equal(await r2.getByTestId('transfer-progress').getAttribute('value'), '5000');
    assert.equal(await r2.getByTestId('transfer-rate').textContent(), '0 B/s');
    assert.equal(await r2.getByTestId('transfer-eta').count(), 0, 'no time left while the rate is 0');

    // A second later the transfer moved on: the time left follows the engine's eta.
    await new Promise((r) => setTimeout(r, 1100));
    await backend.emit(
      'status',
      status({
        ...moving,
        transfers: [{ ...down, bytes_done: 60_000_000, eta_secs: 130 }, up],
        bytes_left: 50_000_000,
        download_rate: 8_000_000,
      }),
    );
    await eventually(async () => assert.equal(await r1.getByTestId('transfer-eta').textContent(), 'about 2 min'));
    assert.equal(await bar1.getAttribute('value'), '60000000');
    assert.equal(await t('status-line').textContent(), 'Syncing 3 assets · 50 MB left · less than a minute');

    // The chart: both lines have points, the download line rises off the baseline.
    assert.equal(await t('rate-down').textContent(), '8.0 MB/s');
    assert.equal(await t('rate-up').textContent(), '250 KB/s');
    assert.equal(await t('chart-top').textContent(), '10 MB/s');
    const points = async (id: string) =>
      ((await t(id).getAttribute('points')) ?? '')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map((p) => p.split(',').map(Number));
    const downPts = await points('throughput-down');
    const upPts = await points('throughput-up');
    assert.ok(downPts.length > 1, `download line: ${JSON.stringify(downPts)}`);
    assert.ok(upPts.length > 1, `upload line: ${JSON.stringify(upPts)}`);
    assert.ok(downPts.every(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
    // viewBox 0 0 600 120, y grows downwards: 10 MB/s is the top, 250 KB/s near the bottom.
    assert.ok(Math.min(...downPts.map(([, y]) => y)) < 30, `download line is high: ${JSON.stringify(downPts)}`);
    assert.ok(Math.min(...upPts.map(([, y]) => y)) > 110, `upload line is low: ${JSON.stringify(upPts)}`);
    assert.ok([...downPts, ...upPts].every(([x]) => x >= 0 && x <= 600));
    assert.equal(Math.max(...downPts.map(([x]) => x)), 600, 'the line reaches "now"');

    // More pending than in flight: the bytes left are not all that is left, so not shown.
    await backend.emit('status', status({ ...moving, pending: 300, in_flight: 1 }));
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Syncing 300 assets'));

    // Only the count is known: no "left", no time.
    await backend.emit('status', status({ ...moving, bytes_left: 0, download_rate: 0 }));
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Syncing 3 assets'));
    await backend.emit('status', status({ ...moving, download_rate: 0 }));
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Syncing 3 assets · 1.2 GB left'));

    // Done: the list empties, the header is back to up to date.
    await backend.emit('status', status({ peers: [p1] }));
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Up to date · 1 peer'));
    assert.equal(await rows.count(), 0);
    await t('transfers-empty').waitFor();

    // A status without the progress fields (an engine from before them) still shows.
    const { transfers: _t, bytes_left: _b, download_rate: _d, upload_rate: _u, ...old } = status({
      peers: [p1],
      pending: 1,
    });
    await backend.emit('status', old);
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Syncing 1 asset'));
    await t('transfers-empty').waitFor();
    assert.equal(backend.callsOf('status').length, 1);
    assert.deepEqual(backend.unhandled, []);
  });
});
