import { it } from 'node:test';
import assert from 'node:assert/strict';
import { appError, appSuite, eventually, runningState, status, type Handler } from './harness.ts';

/** An element's text as read: runs of white space (template line breaks) as one space. */
async function said(l: { textContent(): Promise<string | null> }): Promise<string> {
  return ((await l.textContent()) ?? '').replace(/\s+/g, ' ').trim();
}

/** A TrashItem: trashItem(1) is 1.5 MB, deleted on Laptop. */
function trashItem(n: number, over: Record<string, unknown> = {}) {
  return {
    hash: `t${n}`.padEnd(64, '0'),
    name: `deleted-${n}.jpg`,
    size: 1_500_000 * n,
    content_type: 'image/jpeg',
    deleted_at_ms: Date.UTC(2025, 0, 2, 9, 30) + n * 60_000,
    device_name: 'Laptop',
    this_device: false,
    ...over,
  };
}

/** A fake store's trash: restore and empty change it, as the real one does. */
function fakeTrash(items: ReturnType<typeof trashItem>[]) {
  const state = { items: [...items] };
  const view = () => ({
    items: state.items,
    total_assets: state.items.length,
    total_bytes: state.items.reduce((sum, i) => sum + i.size, 0),
  });
  const handlers: Record<string, Handler> = {
    trash: () => view(),
    restore_asset: ({ hash }) => {
      const before = state.items.length;
      state.items = state.items.filter((i) => i.hash !== hash);
      if (state.items.length === before)
        throw appError('not_found', 'This asset is no longer in the trash: it was deleted for good.');
      return null;
    },
    empty_trash: () => {
      const n = state.items.length;
      state.items = [];
      return n;
    },
  };
  return { state, handlers };
}

appSuite('trash page', (app) => {
  it('lists trashed assets with size, date and device; Restore brings one back', { timeout: 20_000 }, async () => {
    const store = fakeTrash([
      trashItem(2),
      trashItem(1, { name: 'mine\u202Etxt.exe', this_device: true, device_name: 'Desk' }),
    ]);
    const { page, backend } = await app.start(store.handlers);
    const t = (id: string) => page.getByTestId(id);
    await t('nav-trash').click();
    await t('page-trash').waitFor();

    await eventually(async () => assert.equal(await t('trash-row').count(), 2));
    assert.equal(await said(t('trash-summary')), '2 assets · 4.5 MB in the trash on this computer.');
    const first = t('trash-row').first();
    assert.equal(await first.getByTestId('trash-name').textContent(), 'deleted-2.jpg');
    assert.equal(await first.getByTestId('trash-size').textContent(), '3.0 MB');
    assert.equal(await first.getByTestId('trash-device').textContent(), 'Laptop');
    assert.equal(
      await first.locator('time').getAttribute('datetime'),
      new Date(Date.UTC(2025, 0, 2, 9, 32)).toISOString(),
    );
    assert.match(await said(first.getByTestId('trash-deleted-at')), /Jan.*2025|2025.*Jan/);
    const second = t('trash-row').nth(1);
    // Deleted here; its name shown without the right-to-left override.
    assert.equal(await second.getByTestId('trash-device').textContent(), 'This computer');
    assert.equal(await second.getByTestId('trash-name').textContent(), 'minetxt.exe');

    await first.getByTestId('trash-restore').click();
    await eventually(async () => assert.equal(await t('trash-row').count(), 1));
    assert.deepEqual(backend.callsOf('restore_asset'), [{ hash: trashItem(2).hash }]);
    await eventually(async () =>
      assert.match((await t('notices').textContent()) ?? '', /Restored deleted-2\.jpg on every device\./),
    );
    await eventually(async () =>
      assert.equal(await said(t('trash-summary')), '1 asset · 1.5 MB in the trash on this computer.'),
    );

    // Restoring what is gone by now says so.
    store.state.items = [];
    await t('trash-restore').first().click();
    await eventually(async () => assert.match((await t('trash-error').textContent()) ?? '', /deleted for good/));
    assert.deepEqual(backend.unhandled, []);
  });

  it('Empty trash asks first, then empties this computer’s trash', { timeout: 20_000 }, async () => {
    const store = fakeTrash([trashItem(1), trashItem(2), trashItem(3)]);
    const { page, backend } = await app.start(store.handlers);
    const t = (id: string) => page.getByTestId(id);
    await t('nav-trash').click();
    await eventually(async () => assert.equal(await t('trash-row').count(), 3));

    // Cancel: nothing happens.
    await t('trash-empty').click();
    const confirm = t('empty-confirm');
    await confirm.waitFor();
    assert.match(
      await said(confirm),
      /Delete 3 assets \(9\.0 MB\) in the trash for good on this computer\?.*Your other devices keep their own trash\./s,
    );
    await t('empty-confirm-no').click();
    await eventually(async () => assert.equal(await t('empty-confirm').count(), 0));
    assert.equal(backend.callsOf('empty_trash').length, 0);

    // Confirm: emptied, and the page says so.
    await t('trash-empty').click();
    await t('empty-confirm-yes').click();
    await eventually(async () => assert.equal(await t('trash-none').count(), 1));
    assert.equal(backend.callsOf('empty_trash').length, 1);
    assert.equal(await said(t('trash-summary')), 'The trash on this computer is empty.');
    assert.equal(await t('trash-empty').count(), 0, 'nothing left to empty');
    await eventually(async () =>
      assert.match((await t('notices').textContent()) ?? '', /3 assets deleted for good on this computer/),
    );
    assert.deepEqual(backend.unhandled, []);
  });

  it('follows deletions from peers and the status’s trash totals', { timeout: 20_000 }, async () => {
    const store = fakeTrash([]);
    const { page, backend } = await app.start({ ...store.handlers, status: () => status({ trash_assets: 0 }) });
    const t = (id: string) => page.getByTestId(id);
    await t('nav-trash').click();
    await t('trash-none').waitFor();

    // A peer's deletion: the engine event reloads the page.
    store.state.items = [trashItem(4)];
    await backend.emit('engine-event', {
      event: 'asset_deleted',
      peer: 'f'.repeat(64),
      hash: trashItem(4).hash,
      name: 'deleted-4.jpg',
      size: 6_000_000,
    });
    await eventually(async () => assert.equal(await t('trash-row').count(), 1));

    assert.equal(backend.callsOf('trash').length, 2);
    await backend.emit('status', status({ trash_assets: 1, trash_bytes: 6_000_000, tombstones: 1 }));
    await eventually(() => assert.equal(backend.callsOf('trash').length, 3));
    // The same totals again: no reload.
    await backend.emit('status', status({ trash_assets: 1, trash_bytes: 6_000_000, tombstones: 1, local_assets: 9 }));
    // The store's trash expired by itself (no engine event): the status's totals change.
    store.state.items = [];
    await backend.emit('status', status({ trash_assets: 0, trash_bytes: 0, tombstones: 1 }));
    await eventually(async () => assert.equal(await t('trash-none').count(), 1));
    assert.equal(backend.callsOf('trash').length, 4);
    assert.deepEqual(backend.unhandled, []);
  });

  it('an external store that wants a public API key: the page says so', { timeout: 20_000 }, async () => {
    const { page } = await app.start({
      app_state: () => runningState({ store: { kind: 'external', url: 'http://10.0.0.5:3210' } }),
      trash: () => {
        throw appError(
          'store_auth',
          'The CAN Service at http://10.0.0.5:3210 asks for a public API key, which CAN Sync does not have: delete and restore its assets there.',
        );
      },
    });
    const t = (id: string) => page.getByTestId(id);
    await t('nav-trash').click();
    await eventually(async () => assert.match((await t('trash-error').textContent()) ?? '', /public API key/));
    assert.equal(await t('trash-row').count(), 0);
  });
});
