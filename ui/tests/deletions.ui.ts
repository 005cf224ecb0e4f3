import { it } from 'node:test';
import assert from 'node:assert/strict';
import { appError, appSuite, eventually, historyItem, historyOf, peer, runningState, status } from './harness.ts';

/** An element's text as read: runs of white space (template line breaks) as one space. */
async function said(l: { textContent(): Promise<string | null> }): Promise<string> {
  return ((await l.textContent()) ?? '').replace(/\s+/g, ' ').trim();
}

const HELD = { count: 120, sample: ['a.jpg', 'b\u202Egpj.exe', 'c.jpg', 'd.jpg', 'e.jpg'] };

appSuite('deletions', (app) => {
  it('History: "Delete everywhere…" names the devices, asks, then deletes', { timeout: 20_000 }, async () => {
    const items = [
      historyItem(3, { name: 'holiday.mp4', direction: 'received', peer_name: 'Laptop' }),
      historyItem(2, { name: 'gone.txt', direction: 'deleted', peer_name: 'Desk' }),
      historyItem(1, { name: 'back.txt', direction: 'restored', peer_name: 'Laptop' }),
    ];
    const { page, backend } = await app.start({
      status: () => status({ peers: [peer(1, { device_name: 'Laptop' }), peer(2, { device_name: 'Office' })] }),
      history: historyOf(items),
      delete_asset: () => null,
    });
    const t = (id: string) => page.getByTestId(id);
    await t('nav-history').click();
    await eventually(async () => assert.equal(await t('history-row').count(), 3));

    // Deletions and restores are rows too, with their device; a deleted one has no actions.
    const cells = await t('history-direction-cell').allTextContents();
    assert.deepEqual(
      cells.map((c) => c.trim()),
      ['↓ Received', '✕ Deleted', '↺ Restored'],
    );
    assert.deepEqual(await t('history-device').allTextContents(), ['Laptop', 'Desk', 'Laptop']);
    const rows = t('history-row');
    assert.equal(await rows.nth(1).getByTestId('history-delete').count(), 0);
    assert.equal(await rows.nth(2).getByTestId('history-delete').count(), 1);

    // Ask, then cancel: nothing deleted.
    await rows.first().getByTestId('history-delete').click();
    await t('delete-confirm').waitFor();
    assert.equal(await t('delete-devices').textContent(), '3 devices');
    assert.equal(await t('delete-device-names').textContent(), 'this computer, Laptop and Office');
    assert.match(await said(t('delete-confirm')), /Delete holiday\.mp4 on 3 devices/);
    assert.match(await said(t('delete-confirm')), /Devices not connected now delete it when they next connect\./);
    await t('delete-confirm-no').click();
    await eventually(async () => assert.equal(await t('delete-confirm').count(), 0));
    assert.equal(backend.callsOf('delete_asset').length, 0);

    // Ask again and confirm.
    await rows.first().getByTestId('history-delete').click();
    await t('delete-confirm-yes').click();
    await eventually(async () => assert.equal(await t('delete-confirm').count(), 0));
    assert.deepEqual(backend.callsOf('delete_asset'), [{ hash: items[0].hash }]);
    await eventually(async () =>
      assert.match((await t('notices').textContent()) ?? '', /Deleted holiday\.mp4 everywhere\. It is in the Trash\./),
    );

    // The engine's deletion row arrives live.
    await backend.emit(
      'history-added',
      historyItem(4, { name: 'holiday.mp4', hash: items[0].hash, direction: 'deleted', peer_name: 'Desk' }),
    );
    await eventually(async () => assert.equal(await rows.first().getAttribute('data-direction'), 'deleted'));
    assert.deepEqual(backend.unhandled, []);
  });

  it('no peer connected: this computer only, and the others later; a failure shows', { timeout: 20_000 }, async () => {
    const { page, backend } = await app.start({
      history: historyOf([historyItem(1, { name: 'lonely.txt' })]),
      delete_asset: () => {
        throw appError('not_found', 'This asset was deleted already: it is in the Trash.');
      },
      app_state: () => runningState({ store: { kind: 'external', url: 'http://10.0.0.5:3210' } }),
    });
    const t = (id: string) => page.getByTestId(id);
    await t('nav-history').click();
    // An external store: no Open or Save, but Delete everywhere is offered.
    await t('history-delete').click();
    assert.equal(await t('history-open').count(), 0);
    assert.equal(await t('delete-devices').textContent(), '1 device');
    assert.equal(await t('delete-device-names').textContent(), 'this computer');
    assert.match(await said(t('delete-confirm')), /No other device is connected now/);
    await t('delete-confirm-yes').click();
    await eventually(async () => assert.match((await t('history-error').textContent()) ?? '', /deleted already/));
    // The confirmation stays for another try or a cancel.
    assert.equal(await t('delete-confirm').count(), 1);
    assert.deepEqual(backend.callsOf('delete_asset').length, 1);
    assert.deepEqual(backend.unhandled, []);
  });

  it('held deletions: the banner with count and names; Apply releases them', { timeout: 20_000 }, async () => {
    const { page, backend } = await app.start({
      status: () => status({ peers: [peer(1)], mass_delete_held: HELD }),
      release_deletions: () => HELD.count,
    });
    const t = (id: string) => page.getByTestId(id);
    await t('held-banner').waitFor();
    assert.equal(await t('held-count').textContent(), '120 assets');
    // Names cleaned of format characters; the rest counted.
    assert.equal((await t('held-sample').textContent())?.trim(), 'a.jpg, bgpj.exe, c.jpg, d.jpg, e.jpg and 115 more');
    // The banner shows on every page.
    await t('nav-settings').click();
    await t('held-banner').waitFor();

    await t('held-apply').click();
    await eventually(async () => assert.equal(await t('held-banner').count(), 0));
    assert.deepEqual(backend.callsOf('release_deletions'), [{ apply: true }]);
    await eventually(async () =>
      assert.match((await t('notices').textContent()) ?? '', /Applied 120 deletions: the assets are in the Trash\./),
    );
    // The next status no longer holds anything: the banner stays away.
    await backend.emit('status', status({ peers: [peer(1)], mass_delete_held: null }));
    await page.waitForTimeout(100);
    assert.equal(await t('held-banner').count(), 0);
    assert.deepEqual(backend.unhandled, []);
  });

  it('held deletions from an event: Keep mine releases them the other way', { timeout: 20_000 }, async () => {
    let answered = false;
    const { page, backend } = await app.start({
      status: () => status({ peers: [peer(1)] }),
      release_deletions: ({ apply }) => {
        if (answered) throw appError('engine', 'the engine has stopped');
        answered = true;
        return apply ? 0 : 55;
      },
    });
    const t = (id: string) => page.getByTestId(id);
    await t('shell').waitFor();
    assert.equal(await t('held-banner').count(), 0);

    // The engine's event shows it at once, before any status.
    await backend.emit('engine-event', { event: 'mass_delete_held', count: 55, sample: ['x.txt'] });
    await t('held-banner').waitFor();
    assert.equal(await t('held-count').textContent(), '55 assets');
    assert.equal((await t('held-sample').textContent())?.trim(), 'x.txt and 54 more');

    await t('held-keep').click();
    await eventually(async () => assert.equal(await t('held-banner').count(), 0));
    assert.deepEqual(backend.callsOf('release_deletions'), [{ apply: false }]);
    await eventually(async () =>
      assert.match(
        (await t('notices').textContent()) ?? '',
        /Kept your assets: 55 deletions undone on every device\./,
      ),
    );

    // Held again, and the answer fails: the banner stays and says why.
    await backend.emit('engine-event', { event: 'mass_delete_held', count: 60, sample: [] });
    await t('held-banner').waitFor();
    assert.equal(await t('held-sample').count(), 0);
    await t('held-keep').click();
    await eventually(async () => assert.match((await t('held-error').textContent()) ?? '', /engine has stopped/));
    assert.equal(await t('held-banner').count(), 1);
    assert.equal(await t('held-apply').isDisabled(), false, 'the buttons are back for another try');

    // Released elsewhere (`can-sync deletions apply` is not the app's, but the engine says so).
    await backend.emit('engine-event', { event: 'mass_delete_released', applied: true, count: 60 });
    await eventually(async () => assert.equal(await t('held-banner').count(), 0));
    assert.deepEqual(backend.unhandled, []);
  });
});
