// Settings → Bandwidth (limits, LAN, pausing for a metered connection or battery) and the
// header when a condition paused sync.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { appError, appSuite, eventually, peer, runningState, settingsView, status } from './harness.ts';

appSuite('bandwidth and conditions', (app) => {
  it('limits: set, change unit, refuse locally and from the backend, turn off', { timeout: 20_000 }, async () => {
    const settings = settingsView({ download_limit: { amount: 500, unit: 'KB/s' } });
    const { page, backend } = await app.start({
      settings: () => settings,
      update_settings: ({ patch }) => {
        // The backend's own check, as a hostile or stale page would meet it.
        if (patch.upload_limit?.amount === 4000) {
          throw appError('invalid_input', 'Upload limit: enter a whole number of MB/s from 1 to 4294, or turn the limit off.');
        }
        return Object.assign(settings, patch);
      },
    });
    const t = (id: string) => page.getByTestId(id);
    await t('nav-settings').click();
    await t('settings-bandwidth').waitFor();

    // What is saved is shown: upload off (inputs disabled), download 500 KB/s.
    assert.equal(await t('upload-limit-on').isChecked(), false);
    assert.equal(await t('upload-limit-amount').isDisabled(), true);
    assert.equal(await t('download-limit-on').isChecked(), true);
    assert.equal(await t('download-limit-amount').inputValue(), '500');
    assert.equal(await t('download-limit-unit').inputValue(), 'KB/s');

    // Turning a limit on saves it at once with the shown amount (1 MB/s by default).
    await t('upload-limit-on').check();
    await eventually(() =>
      assert.deepEqual(backend.callsOf('update_settings'), [{ patch: { upload_limit: { amount: 1, unit: 'MB/s' } } }]),
    );
    await t('upload-limit-amount').fill('20');
    await t('upload-limit-amount').press('Enter');
    await t('upload-limit-unit').selectOption('KB/s');
    await eventually(() =>
      assert.deepEqual(backend.callsOf('update_settings').slice(1), [
        { patch: { upload_limit: { amount: 20, unit: 'MB/s' } } },
        { patch: { upload_limit: { amount: 20, unit: 'KB/s' } } },
      ]),
    );

    // Not a whole number in range: refused on the page, nothing sent.
    for (const bad of ['1.5', '0', '5000000']) {
      await t('upload-limit-amount').fill(bad);
      await t('upload-limit-amount').press('Enter');
      await eventually(async () =>
        assert.equal(await t('upload-limit-error').textContent(), 'Enter a whole number of KB/s from 1 to 4294967.'),
      );
    }
    assert.equal(backend.callsOf('update_settings').length, 3);

    // Refused by the backend: its sentence shows under the field.
    await t('upload-limit-unit').selectOption('MB/s');
    await t('upload-limit-amount').fill('4000');
    await t('upload-limit-amount').press('Enter');
    await eventually(async () =>
      assert.match((await t('upload-limit-error').textContent()) ?? '', /^Upload limit: enter a whole number of MB\/s/),
    );

    // Off: null, and the error is gone.
    await t('download-limit-on').uncheck();
    await eventually(() =>
      assert.deepEqual(backend.callsOf('update_settings').at(-1), { patch: { download_limit: null } }),
    );
    assert.equal(await t('download-limit-amount').isDisabled(), true);
    assert.equal(await t('download-limit-error').textContent(), '');

    // The toggles.
    await t('setting-limit-lan').check();
    await t('setting-pause-metered').check();
    await t('setting-pause-battery').check();
    await eventually(() =>
      assert.deepEqual(backend.callsOf('update_settings').slice(-3), [
        { patch: { limit_lan: true } },
        { patch: { pause_on_metered: true } },
        { patch: { pause_on_battery: true } },
      ]),
    );
    assert.deepEqual(backend.unhandled, []);
  });

  it("a refused toggle puts itself back and says why beside itself, in its own card", { timeout: 20_000 }, async () => {
    const settings = settingsView();
    const { page, backend } = await app.start({
      settings: () => settings,
      update_settings: ({ patch }) => {
        if ('pause_on_battery' in patch) throw appError('engine', 'This computer does not report its power source.');
        if ('start_hidden' in patch) throw appError('engine', 'No system tray to start hidden in.');
        return Object.assign(settings, patch);
      },
    });
    const t = (id: string) => page.getByTestId(id);
    await t('nav-settings').click();
    await t('settings-bandwidth').waitFor();
    const general = page.locator('.card', { has: t('setting-notifications') });
    const bandwidth = t('settings-bandwidth');
    const shown = (card: typeof general) => card.locator('[role=alert]:not(:empty)').allTextContents();

    // click(), not check(): the box is put back at once.
    await t('setting-pause-battery').click();
    await eventually(async () =>
      assert.deepEqual(await shown(bandwidth), ['This computer does not report its power source.']),
    );
    assert.equal(
      await bandwidth.getByTestId('setting-pause-battery-error').textContent(),
      'This computer does not report its power source.',
    );
    assert.equal(await t('setting-pause-battery').isChecked(), false, 'put back');
    assert.deepEqual(await shown(general), [], 'nothing in the General card');

    await t('setting-start-hidden').click();
    await eventually(async () => assert.deepEqual(await shown(general), ['No system tray to start hidden in.']));
    assert.equal(await t('setting-start-hidden-error').textContent(), 'No system tray to start hidden in.');
    assert.equal(await t('setting-start-hidden').isChecked(), false);

    // Another toggle that saves leaves each error where it is; its own stays empty.
    await t('setting-limit-lan').check();
    await eventually(() => assert.deepEqual(backend.callsOf('update_settings').at(-1), { patch: { limit_lan: true } }));
    assert.equal(await t('setting-limit-lan-error').textContent(), '');
    assert.deepEqual(await shown(bandwidth), ['This computer does not report its power source.']);
    assert.deepEqual(await shown(general), ['No system tray to start hidden in.']);
    assert.deepEqual(backend.unhandled, []);
  });

  it('a limit being typed survives new settings; it follows them again once left', { timeout: 20_000 }, async () => {
    const settings = settingsView({ upload_limit: { amount: 500, unit: 'KB/s' } });
    const { page, backend } = await app.start({
      settings: () => settings,
      update_settings: ({ patch }) => Object.assign(settings, patch),
    });
    const t = (id: string) => page.getByTestId(id);
    await t('nav-settings').click();
    await t('settings-bandwidth').waitFor();
    const amount = t('upload-limit-amount');
    assert.equal(await amount.inputValue(), '500');

    // Typing, not saved yet; new settings arrive (another toggle saved, focus stays put).
    await amount.fill('77');
    await page.evaluate(`document.querySelector('[data-testid=setting-limit-lan]').click()`);
    await eventually(() => assert.deepEqual(backend.callsOf('update_settings'), [{ patch: { limit_lan: true } }]));
    await eventually(async () => assert.equal(await t('setting-limit-lan').isChecked(), true));
    assert.equal(await amount.inputValue(), '77', 'the draft is kept');
    assert.equal(await amount.evaluate((el) => el === document.activeElement), true);
    await amount.press('Enter');
    await eventually(() =>
      assert.deepEqual(backend.callsOf('update_settings').at(-1), { patch: { upload_limit: { amount: 77, unit: 'KB/s' } } }),
    );

    // Not editing: a changed value from the backend shows.
    await amount.blur();
    Object.assign(settings, { upload_limit: { amount: 3, unit: 'MB/s' } });
    await t('setting-limit-lan').uncheck();
    await eventually(async () => assert.equal(await amount.inputValue(), '3'));
    assert.equal(await t('upload-limit-unit').inputValue(), 'MB/s');
    assert.equal(await t('upload-limit-error').textContent(), '');
    assert.deepEqual(backend.unhandled, []);
  });

  it('the header says why a condition paused sync; Resume overrides it', { timeout: 20_000 }, async () => {
    const { page, backend } = await app.start({ status: () => status({ peers: [peer(1)] }) });
    const t = (id: string) => page.getByTestId(id);
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Up to date · 1 peer'));

    await backend.emit('app-state', runningState({ paused: true, paused_reason: 'metered' }));
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Paused (metered)'));
    assert.equal(await t('pause-toggle').textContent(), 'Resume');
    assert.match((await t('pause-toggle').getAttribute('title')) ?? '', /no longer metered/);

    await backend.emit('app-state', runningState({ paused: true, paused_reason: 'battery' }));
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Paused (on battery)'));
    await t('pause-toggle').click();
    await eventually(() => assert.equal(backend.callsOf('resume').length, 1));
    await backend.emit('app-state', runningState());
    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Up to date · 1 peer'));
    assert.equal(await t('pause-toggle').getAttribute('title'), null);
    assert.deepEqual(backend.unhandled, []);
  });
});
