// Settings → Bandwidth (limits, LAN, pausing for a metered connection or battery) and the
// header when a condition paused sync.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import {
  FakeBackend,
  appError,
  closeSharedEnv,
  eventually,
  openApp,
  peer,
  runningState,
  settingsView,
  sharedEnv,
  status,
  type Handler,
} from './harness.ts';

after(closeSharedEnv);

describe('bandwidth and conditions', () => {
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

  async function start(over: Record<string, Handler> = {}): Promise<{ page: Page; backend: FakeBackend }> {
    const backend = new FakeBackend(over);
    const opened = await openApp(browser, server.url, backend);
    context = opened.context;
    return { page: opened.page, backend };
  }

  it('limits: set, change unit, refuse locally and from the backend, turn off', { timeout: 20_000 }, async () => {
    const settings = settingsView({ download_limit: { amount: 500, unit: 'KB/s' } });
    const { page, backend } = await start({
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

  it('the header says why a condition paused sync; Resume overrides it', { timeout: 20_000 }, async () => {
    const { page, backend } = await start({ status: () => status({ peers: [peer(1)] }) });
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
