import { it } from 'node:test';
import assert from 'node:assert/strict';
import { appError, appSuite, eventually, peer, runningState, settingsView, status } from './harness.ts';

appSuite('app shell, pairing and settings', (app) => {
  it('pause toggle calls pause/resume and follows app-state events', { timeout: 20_000 }, async () => {
    const { page, backend } = await app.start({ status: () => status({ peers: [peer(1)] }) });
    const t = (id: string) => page.getByTestId(id);
    const toggle = t('pause-toggle');

    await eventually(async () => assert.equal(await t('status-line').textContent(), 'Up to date · 1 peer'));
    assert.equal(await toggle.textContent(), 'Pause');

    await toggle.click();
    await eventually(() => assert.equal(backend.callsOf('pause').length, 1));
    // The button follows the backend's state, not the click.
    assert.equal(await toggle.textContent(), 'Pause');
    await backend.emit('app-state', runningState({ paused: true, paused_reason: 'user' }));
    await eventually(async () => assert.equal(await toggle.textContent(), 'Resume'));
    assert.equal(await t('status-line').textContent(), 'Paused');

    await toggle.click();
    await eventually(() => assert.equal(backend.callsOf('resume').length, 1));
    await backend.emit('app-state', runningState({ paused: false }));
    await eventually(async () => assert.equal(await toggle.textContent(), 'Pause'));
    assert.equal(await t('status-line').textContent(), 'Up to date · 1 peer');
    assert.equal(backend.callsOf('pause').length, 1);
    assert.equal(backend.callsOf('status').length, 1, 'app-state events do not re-subscribe');
    assert.deepEqual(backend.unhandled, []);
  });

  it('error phase shows the message; Retry calls retry, reading the state does not', { timeout: 20_000 }, async () => {
    const msg =
      'No Secret Service keychain is reachable. Install and unlock GNOME Keyring or KWallet, then retry.';
    const failed = {
      phase: 'error',
      error: appError('keychain_unavailable', msg),
      store: null,
      paused: false,
      paused_reason: null,
    };
    let started = false;
    const { page, backend } = await app.start({
      // A getter: whatever the UI reads, nothing starts.
      app_state: () => (started ? runningState() : failed),
      retry: () => {
        started = true;
        return runningState();
      },
    });
    const t = (id: string) => page.getByTestId(id);
    await t('error-panel').waitFor();
    assert.equal(await t('error-message').textContent(), msg);
    assert.equal(backend.callsOf('retry').length, 0, 'opening the app does not retry');
    await t('error-retry').click();
    await t('shell').waitFor();
    assert.equal(backend.callsOf('retry').length, 1);
    assert.equal(backend.callsOf('app_state').length, 1, 'Retry uses retry, not app_state');

    // app-state events switch phases live.
    await backend.emit('app-state', { phase: 'setup', error: null, store: null, paused: false, paused_reason: null });
    await eventually(async () => assert.equal(await t('wizard').count(), 1));
  });

  it('pairing: reveal (backend confirms natively); direct connect shows the result', { timeout: 20_000 }, async () => {
    // The backend shows its own confirmation dialog; null means the user cancelled it.
    let confirmed = false;
    const { page, backend } = await app.start({
      reveal_passphrase: () => (confirmed ? 'seven secret words go right here now' : null),
      connect_ticket: ({ ticket }) => {
        if (ticket !== 'good-ticket') throw appError('invalid_input', 'ticket: not a valid endpoint ticket');
        return null;
      },
    });
    const t = (id: string) => page.getByTestId(id);
    await t('nav-pairing').click();
    await eventually(async () => assert.equal(await t('pairing-device-name').textContent(), 'Desk'));

    await t('reveal-passphrase').click();
    await eventually(() => assert.equal(backend.callsOf('reveal_passphrase').length, 1));
    // Cancelled in the dialog: nothing shown, the button is back.
    await eventually(async () => assert.equal(await t('reveal-passphrase').isEnabled(), true));
    assert.equal(await t('revealed-passphrase').count(), 0);
    confirmed = true;
    await t('reveal-passphrase').click();
    await eventually(async () =>
      assert.equal(await t('revealed-passphrase').inputValue(), 'seven secret words go right here now'),
    );
    await t('hide-passphrase').click();
    assert.equal(await t('revealed-passphrase').count(), 0);
    assert.equal(backend.callsOf('reveal_passphrase').length, 2);

    await page.locator('[data-testid="direct-connect"] > summary').click();
    assert.equal(await t('own-ticket').inputValue(), 'endpointticketAAAA');
    await t('peer-ticket').fill('junk');
    await t('connect-ticket').click();
    await eventually(async () =>
      assert.equal(await t('connect-result').textContent(), 'ticket: not a valid endpoint ticket'),
    );
    await t('peer-ticket').fill('good-ticket');
    await t('connect-ticket').click();
    await eventually(async () => assert.match((await t('connect-result').textContent()) ?? '', /^Connected/));
    assert.deepEqual(backend.callsOf('connect_ticket'), [{ ticket: 'junk' }, { ticket: 'good-ticket' }]);
    assert.deepEqual(backend.unhandled, []);
  });

  it('settings: toggles, passphrase, store, reset back to the wizard', { timeout: 20_000 }, async () => {
    let phase = 'running';
    let storeConfirmations = 0;
    const settings = settingsView();
    const { page, backend } = await app.start({
      app_state: () => (phase === 'running' ? runningState() : { phase, error: null, store: null, paused: false, paused_reason: null }),
      update_settings: ({ patch }) => Object.assign(settings, patch),
      check_passphrase: ({ passphrase }) =>
        passphrase.length < 10
          ? { bits: 20, verdict: 'refused', message: 'About 20 bits: too easy to guess (minimum 50).' }
          : { bits: 90, verdict: 'ok', message: 'About 90 bits: strong.' },
      change_passphrase: () => null,
      test_store: () => ({ asset_count: 1 }),
      // The backend confirms an external store in a native dialog: declined once, then accepted.
      set_store: ({ store }) =>
        storeConfirmations++ === 0 ? null : Object.assign(settings, { store: { kind: store.kind, url: store.url } }),
      reset_device: () => {
        phase = 'setup';
        return null;
      },
      wizard_view: () => ({
        step: 'store',
        store: null,
        device_name_default: 'test-host',
        passphrase_floor_bits: 50,
        passphrase_recommended_bits: 80,
      }),
    });
    const t = (id: string) => page.getByTestId(id);
    await t('nav-settings').click();
    await eventually(async () => assert.equal(await t('settings-device-name').textContent(), 'Desk'));
    assert.equal(await t('setting-notifications').isChecked(), true);
    await t('setting-launch-at-login').check();
    await t('setting-notifications').uncheck();
    await eventually(() =>
      assert.deepEqual(backend.callsOf('update_settings'), [
        { patch: { launch_at_login: true } },
        { patch: { notifications: false } },
      ]),
    );

    // Change passphrase: strength-checked, confirmed inline.
    await t('passphrase-edit').click();
    await t('new-passphrase').fill('short');
    await eventually(async () => assert.equal(await t('strength-verdict').getAttribute('data-verdict'), 'refused'));
    assert.equal(await t('passphrase-change').isDisabled(), true);
    await t('new-passphrase').fill('a much longer passphrase');
    await eventually(async () => assert.equal(await t('strength-verdict').getAttribute('data-verdict'), 'ok'));
    await t('passphrase-change').click();
    await t('passphrase-confirm').waitFor();
    assert.equal(backend.callsOf('change_passphrase').length, 0);
    await t('passphrase-confirm-yes').click();
    await eventually(() =>
      assert.deepEqual(backend.callsOf('change_passphrase'), [{ passphrase: 'a much longer passphrase' }]),
    );

    // Switch to an external store.
    await t('store-edit').click();
    await t('store-external').check();
    assert.equal(await t('settings-store-warning').count(), 0, 'the built-in store is local');
    await t('store-url').fill('http://nas.local:3210');
    await eventually(async () => assert.equal(await t('store-url-warning').count(), 1));
    await t('store-api-key').fill('k3y');
    await t('store-test').click();
    await eventually(async () => assert.equal(await t('store-test-result').textContent(), 'Connected — 1 asset'));
    await t('store-save').click();
    // Declined in the dialog: nothing changed, the form is still open, no error.
    await eventually(() => assert.equal(backend.callsOf('set_store').length, 1));
    await eventually(async () => assert.equal(await t('store-save').isEnabled(), true));
    assert.match((await t('settings-store').textContent()) ?? '', /Built-in store/);
    assert.equal(await t('store-error').textContent(), '');
    await t('store-save').click();
    await eventually(async () => assert.match((await t('settings-store').textContent()) ?? '', /CAN Service at\s+http:\/\/nas\.local:3210/));
    // Plain http to another machine: warned about in the form and on the page.
    assert.match(
      (await t('settings-store-warning').textContent()) ?? '',
      /its sync key and your assets would cross the network unencrypted/,
    );
    assert.deepEqual(backend.callsOf('set_store'), [
      { store: { kind: 'external', url: 'http://nas.local:3210', api_key: 'k3y' } },
      { store: { kind: 'external', url: 'http://nas.local:3210', api_key: 'k3y' } },
    ]);

    await t('reset-device').click();
    await t('reset-confirm').waitFor();
    assert.equal(backend.callsOf('reset_device').length, 0);
    await t('reset-confirm-yes').click();
    await t('wizard-step-store').waitFor();
    assert.equal(backend.callsOf('reset_device').length, 1);
    assert.deepEqual(backend.unhandled, []);
  });
});
