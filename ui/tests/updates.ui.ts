import { it } from 'node:test';
import assert from 'node:assert/strict';
import { appError, appSuite, eventually, updateState } from './harness.ts';

const UPDATE = {
  version: '9.9.9',
  notes: 'Faster sync.\n<b>not bold</b>',
  date: '2026-03-01T12:00:00Z',
};

appSuite('app updates', (app) => {
  it('update-available shows the version and notes; a refused install says why; Later hides it', { timeout: 20_000 }, async () => {
    let installs = 0;
    const { page, backend } = await app.start({
      install_update: () => {
        installs++;
        throw appError(
          'update_signature',
          "The update was not installed: its signature does not match CAN Sync's signing key.",
        );
      },
    });
    const banner = page.getByTestId('update-banner');
    await page.getByTestId('shell').waitFor();
    assert.equal(await banner.count(), 0, 'no update, no banner');

    await backend.emit('update-available', UPDATE);
    await banner.waitFor();
    assert.equal(await banner.getByTestId('update-version').textContent(), 'Version 9.9.9 is available');
    assert.match((await banner.textContent()) ?? '', /you have 0\.1\.0/);
    // The notes as text: line breaks kept, markup not interpreted.
    assert.equal(await banner.getByTestId('update-notes').innerText(), 'Faster sync.\n<b>not bold</b>');
    assert.equal(await banner.locator('b').count(), 0);

    await banner.getByTestId('update-install').click();
    await eventually(async () =>
      assert.match((await banner.getByTestId('update-error').textContent()) ?? '', /signature does not match/),
    );
    assert.equal(installs, 1);
    assert.equal(await banner.getByTestId('update-install').isEnabled(), true, 'can try again');

    // Later: gone from the main window, still offered in Settings.
    await banner.getByTestId('update-later').click();
    await eventually(async () => assert.equal(await banner.count(), 0));
    await page.getByTestId('nav-settings').click();
    const card = page.getByTestId('settings-updates');
    await eventually(async () =>
      assert.equal(await card.getByTestId('update-version').textContent(), 'Version 9.9.9 is available'),
    );
    assert.equal(await card.getByTestId('update-later').count(), 0);
    assert.deepEqual(backend.unhandled, []);
  });

  it('an update found before the page listened is shown from update_state', { timeout: 20_000 }, async () => {
    const { page, backend } = await app.start({
      update_state: () => updateState({ available: UPDATE }),
      install_update: () => null,
    });
    const banner = page.getByTestId('update-banner');
    await banner.waitFor();
    await banner.getByTestId('update-install').click();
    await eventually(() => assert.equal(backend.callsOf('install_update').length, 1));
    // Installed: the app restarts, so the button stays disabled until it does.
    await eventually(async () => assert.equal(await banner.getByTestId('update-install').textContent(), 'Installing…'));
    assert.equal(await banner.getByTestId('update-install').isEnabled(), false);
    assert.deepEqual(backend.unhandled, []);
  });

  it('a .deb install: Settings says the package manager updates it; no banner, no check button', { timeout: 20_000 }, async () => {
    const reason = 'CAN Sync was installed from a .deb package: your package manager (apt) keeps it up to date.';
    const { page, backend } = await app.start({
      update_state: () => updateState({ enabled: false, reason }),
    });
    await page.getByTestId('nav-settings').click();
    const card = page.getByTestId('settings-updates');
    await eventually(async () => assert.equal(await card.getByTestId('updates-off').textContent(), reason));
    assert.equal(await card.getByTestId('updates-version').textContent(), 'CAN Sync 0.1.0');
    assert.equal(await card.getByTestId('updates-check').count(), 0);
    assert.equal(await page.getByTestId('update-banner').count(), 0);
    assert.deepEqual(backend.callsOf('check_update'), []);
    assert.deepEqual(backend.unhandled, []);
  });

  it('Check for updates: up to date, then an update found', { timeout: 20_000 }, async () => {
    let found = false;
    const { page, backend } = await app.start({
      check_update: () => updateState({ available: found ? UPDATE : null }),
    });
    await page.getByTestId('nav-settings').click();
    const card = page.getByTestId('settings-updates');
    await card.getByTestId('updates-check').click();
    await eventually(async () =>
      assert.equal(await card.getByTestId('updates-check-result').textContent(), 'CAN Sync is up to date.'),
    );
    found = true;
    await card.getByTestId('updates-check').click();
    await eventually(async () =>
      assert.equal(await card.getByTestId('update-version').textContent(), 'Version 9.9.9 is available'),
    );
    await page.getByTestId('update-banner').waitFor();
    assert.equal(backend.callsOf('check_update').length, 2);
    assert.deepEqual(backend.unhandled, []);
  });
});
