import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { BrowserContext, Page } from 'playwright-core';
import { appError, appSuite, eventually, FakeBackend, runningState, type Handler } from './harness.ts';

const REFUSED = 'password';
const WEAK = 'sunny meadow river';
const STRONG = 'correct horse battery staple orbit lantern';
const REFUSED_MSG = 'About 12 bits: too easy to guess (minimum 50).';
const WEAK_MSG = 'About 60 bits: acceptable, but 80 or more is recommended.';
const WEAK_REJECT_MSG = 'About 48 bits by the final estimate: below the minimum of 50.';
const OK_MSG = 'About 95 bits: strong.';
const AUTH_MSG = 'The CAN Service refused the sync API key (HTTP 401).';
/** Seven of the longest words of the generator's list (EFF long list: at most 9 letters). */
const GENERATED = [
  'unmatched scoreless tightrope crossword boldfaced subscript rectangle',
  'overgrown unwrapped festivity clockwork shortlist trademark unsheathe',
];

/**
 * Records, in the page, each wizard screen as it appears (`window.__wizardScreens`: the
 * data-testid of every `wizard-step-*` element, consecutive repeats collapsed). A string:
 * functions compiled by tsx cannot always be serialised to the page.
 */
const RECORD_SCREENS = `(() => {
  const seen = (window.__wizardScreens = []);
  const note = (el) => {
    const id = el.getAttribute('data-testid');
    if (seen[seen.length - 1] !== id) seen.push(id);
  };
  const scan = (node) => {
    if (node.nodeType !== 1) return;
    if (node.matches('[data-testid^="wizard-step-"]')) note(node);
    node.querySelectorAll('[data-testid^="wizard-step-"]').forEach(note);
  };
  scan(document.body);
  new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach(scan))).observe(document.body, {
    childList: true,
    subtree: true,
  });
})()`;

/**
 * A fake backend that walks the wizard's steps like the real one. `onSetUp` runs when the
 * device step finished setup, before `wizard_submit` answers (the real backend emits
 * `app-state` "running" there).
 */
function wizardBackend(onSetUp: () => Promise<void> = async () => {}): Record<string, Handler> {
  const order = ['store', 'passphrase', 'device', 'done'];
  let step = 'store';
  let store: unknown = null;
  let generated = 0;
  const view = () => ({
    step,
    store,
    device_name_default: 'test-host',
    passphrase_floor_bits: 50,
    passphrase_recommended_bits: 80,
  });
  return {
    app_state: () => ({
      phase: step === 'done' ? 'running' : 'setup',
      error: null,
      store: step === 'done' ? { kind: 'builtin', url: 'http://127.0.0.1:3210' } : null,
      paused: false,
      paused_reason: null,
    }),
    wizard_view: view,
    wizard_submit: async ({ input }) => {
      switch (input.step) {
        case 'store':
          if (input.store.kind === 'external' && input.store.api_key !== 'good-key') {
            throw appError('store_auth', AUTH_MSG);
          }
          store =
            input.store.kind === 'builtin' ? { kind: 'builtin' } : { kind: 'external', url: input.store.url };
          break;
        case 'passphrase':
          if (input.passphrase === WEAK) throw appError('weak_passphrase', WEAK_REJECT_MSG);
          break;
        case 'back':
          step = order[Math.max(0, order.indexOf(step) - 1)];
          return view();
      }
      step = order[order.indexOf(step) + 1];
      if (step === 'done') await onSetUp();
      return view();
    },
    generate_passphrase: () => {
      const passphrase = GENERATED[generated++ % GENERATED.length];
      return { passphrase, bits: 90.5, words: 7 };
    },
    check_passphrase: ({ passphrase }) => {
      if (passphrase === STRONG) return { bits: 95, verdict: 'ok', message: OK_MSG };
      if (passphrase === WEAK) return { bits: 60, verdict: 'weak', message: WEAK_MSG };
      return { bits: 12, verdict: 'refused', message: REFUSED_MSG };
    },
    test_store: ({ apiKey }) => {
      if (apiKey === 'good-key') return { asset_count: 1234 };
      throw appError('store_auth', AUTH_MSG);
    },
  };
}

appSuite('setup wizard', (app) => {
  async function start(): Promise<{ page: Page; backend: FakeBackend; context: BrowserContext }> {
    const backend: FakeBackend = new FakeBackend(
      wizardBackend(() => backend.emit('app-state', runningState())),
    );
    const { page, context } = await app.open(backend);
    await page.getByTestId('wizard-step-store').waitFor();
    await page.evaluate(RECORD_SCREENS);
    return { page, backend, context };
  }

  const screens = (page: Page) => page.evaluate('window.__wizardScreens');

  it('built-in store, refused/weak/strong passphrase, device name, done', { timeout: 30_000 }, async () => {
    const { page, backend } = await start();
    const t = (id: string) => page.getByTestId(id);

    // Store step: built-in is the default.
    await t('wizard-step-store').waitFor();
    assert.equal(await t('store-builtin').isChecked(), true);
    await t('wizard-next').click();

    // Passphrase step opens on "create" with a generated passphrase.
    await t('wizard-step-passphrase').waitFor();
    await eventually(async () => assert.equal(await t('generated-info').textContent(), '7 words, about 91 bits'));

    // Join with a refused passphrase: debounced check, Next disabled, message shown.
    await t('passphrase-mode-join').check();
    await t('join-passphrase').fill('pass');
    await t('join-passphrase').fill(REFUSED);
    await eventually(async () => assert.equal(await t('strength-message').textContent(), REFUSED_MSG));
    assert.equal(await t('strength-verdict').getAttribute('data-verdict'), 'refused');
    assert.equal(await t('wizard-next').isDisabled(), true);
    assert.deepEqual(backend.callsOf('check_passphrase'), [{ passphrase: REFUSED }], 'debounced: one check');

    // A "weak" one warns but allows Next; the backend still rejects it here.
    await t('join-passphrase').fill(WEAK);
    await t('strength-warning').waitFor();
    assert.equal(await t('strength-message').textContent(), WEAK_MSG);
    assert.equal(await t('wizard-next').isEnabled(), true);
    await t('wizard-next').click();
    await eventually(async () => assert.equal(await t('wizard-error').textContent(), WEAK_REJECT_MSG));
    assert.equal(await t('wizard-error').getAttribute('role'), 'alert');
    await t('wizard-step-passphrase').waitFor();

    // A strong one goes through.
    await t('join-passphrase').fill(STRONG);
    await eventually(async () => assert.equal(await t('strength-message').textContent(), OK_MSG));
    await t('wizard-next').click();

    // Device step: prefilled; Back keeps the typed passphrase.
    await t('wizard-step-device').waitFor();
    assert.equal(await t('device-name').inputValue(), 'test-host');
    await t('wizard-back').click();
    await t('wizard-step-passphrase').waitFor();
    assert.equal(await t('join-passphrase').inputValue(), STRONG);
    await t('wizard-next').click();
    await t('wizard-step-device').waitFor();
    await t('device-name').fill('  Laptop ');
    await t('wizard-finish').click();

    // Finish lands on the main window: no "done" screen in between.
    await t('shell').waitFor();
    await t('page-peers').waitFor();
    assert.equal(await t('wizard').count(), 0);
    assert.deepEqual(await screens(page), [
      'wizard-step-store',
      'wizard-step-passphrase',
      'wizard-step-device',
      'wizard-step-passphrase',
      'wizard-step-device',
    ]);

    // The banner's link opens Pairing and retires the banner.
    await t('setup-banner-pairing').click();
    await t('page-pairing').waitFor();
    assert.equal(await t('setup-banner').count(), 0);

    assert.deepEqual(backend.callsOf('wizard_submit'), [
      { input: { step: 'store', store: { kind: 'builtin' } } },
      { input: { step: 'passphrase', passphrase: WEAK, generated: false } },
      { input: { step: 'passphrase', passphrase: STRONG, generated: false } },
      { input: { step: 'back' } },
      { input: { step: 'passphrase', passphrase: STRONG, generated: false } },
      { input: { step: 'device', device_name: 'Laptop' } },
    ]);
    assert.deepEqual(backend.unhandled, []);
  });

  it('generated passphrase: seven words shown whole, copyable, submitted with generated: true', { timeout: 20_000 }, async () => {
    const { page, backend, context } = await start();
    const t = (id: string) => page.getByTestId(id);
    await context.grantPermissions(['clipboard-read', 'clipboard-write']);
    await t('wizard-next').click();
    await eventually(async () => assert.equal(await t('generated-passphrase').textContent(), GENERATED[0]));

    // Whole: every word in the text, nothing clipped or scrolled, at the app's window size and
    // at a narrow one (where it wraps).
    const fits = async () => {
      const box = await t('generated-passphrase').evaluate((el) => ({
        scrollWidth: el.scrollWidth,
        clientWidth: el.clientWidth,
        scrollHeight: el.scrollHeight,
        clientHeight: el.clientHeight,
        text: el.textContent ?? '',
        fontPx: parseFloat(getComputedStyle(el).fontSize),
      }));
      assert.deepEqual(box.text.trim().split(/\s+/), GENERATED[0].split(' '));
      assert.ok(box.scrollWidth <= box.clientWidth, `scrolls sideways: ${JSON.stringify(box)}`);
      assert.ok(box.scrollHeight <= box.clientHeight, `scrolls down: ${JSON.stringify(box)}`);
      assert.ok(box.fontPx >= 18, `large: ${box.fontPx}px`);
      assert.ok(await t('generated-passphrase').isVisible());
    };
    await page.setViewportSize({ width: 960, height: 680 });
    await fits();
    await page.setViewportSize({ width: 420, height: 680 });
    await fits();
    await page.setViewportSize({ width: 1100, height: 800 });

    await t('copy-passphrase').click();
    await eventually(async () => assert.equal(await t('copy-passphrase').textContent(), 'Copied'));
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), GENERATED[0]);

    await t('generate-another').click();
    await eventually(async () => assert.equal(await t('generated-passphrase').textContent(), GENERATED[1]));
    await t('wizard-next').click();
    await t('wizard-step-device').waitFor();
    assert.deepEqual(backend.callsOf('wizard_submit')[1], {
      input: { step: 'passphrase', passphrase: GENERATED[1], generated: true },
    });
    assert.deepEqual(backend.callsOf('check_passphrase'), []);
    assert.deepEqual(backend.unhandled, []);
  });

  it('three screens, then the main window; the setup banner shows once', { timeout: 30_000 }, async () => {
    const { page, backend } = await start();
    const t = (id: string) => page.getByTestId(id);
    await t('wizard-next').click();
    await eventually(async () => assert.equal(await t('generated-passphrase').textContent(), GENERATED[0]));
    await t('wizard-next').click();
    await t('wizard-step-device').waitFor();
    await t('wizard-finish').click();

    // Finish is the last click: the main window, on its first page, with the banner.
    await t('shell').waitFor();
    await t('page-peers').waitFor();
    assert.deepEqual(await screens(page), ['wizard-step-store', 'wizard-step-passphrase', 'wizard-step-device']);
    assert.equal(backend.callsOf('wizard_submit').length, 3);
    assert.equal(
      (await t('setup-banner').textContent())?.replace(/\s+/g, ' ').trim(),
      'Add another computer: install CAN Sync there and enter the same passphrase. Open Pairing ×',
    );

    // Until dismissed it is there on the next start too; once dismissed, never again.
    await page.reload();
    await t('shell').waitFor();
    await t('setup-banner').waitFor();
    await t('setup-banner-dismiss').click();
    await eventually(async () => assert.equal(await t('setup-banner').count(), 0));
    await page.reload();
    await t('shell').waitFor();
    await t('page-peers').waitFor();
    await t('nav-pairing').click();
    await t('page-pairing').waitFor();
    assert.equal(await t('setup-banner').count(), 0);
    assert.deepEqual(backend.unhandled, []);
  });

  it('external store: Test shows the asset count or the exact error', { timeout: 20_000 }, async () => {
    const { page, backend } = await start();
    const t = (id: string) => page.getByTestId(id);
    await t('wizard-step-store').waitFor();
    await t('store-external').check();
    assert.equal(await t('store-url').inputValue(), 'http://127.0.0.1:3210');
    await t('store-url').fill('http://10.0.0.5:3210');

    await t('store-api-key').fill('good-key');
    assert.equal(await t('store-api-key').getAttribute('type'), 'password');
    await t('store-test').click();
    await eventually(async () => assert.equal(await t('store-test-result').textContent(), 'Connected — 1,234 assets'));

    await t('store-api-key').fill('bad-key');
    assert.equal(await t('store-test-result').count(), 0, 'stale result hidden after an edit');
    await t('store-test').click();
    await eventually(async () => assert.equal(await t('store-test-result').textContent(), AUTH_MSG));

    // Next with the bad key: the step's error shows in the alert region.
    await t('wizard-next').click();
    await eventually(async () => assert.equal(await t('wizard-error').textContent(), AUTH_MSG));

    await t('store-api-key').fill('good-key');
    await t('wizard-next').click();
    await t('wizard-step-passphrase').waitFor();

    assert.deepEqual(backend.callsOf('test_store'), [
      { url: 'http://10.0.0.5:3210', apiKey: 'good-key' },
      { url: 'http://10.0.0.5:3210', apiKey: 'bad-key' },
    ]);
    assert.deepEqual(backend.callsOf('wizard_submit'), [
      { input: { step: 'store', store: { kind: 'external', url: 'http://10.0.0.5:3210', api_key: 'bad-key' } } },
      { input: { step: 'store', store: { kind: 'external', url: 'http://10.0.0.5:3210', api_key: 'good-key' } } },
    ]);
    assert.deepEqual(backend.unhandled, []);
  });

  it('external store: plain http to another machine is warned about', { timeout: 20_000 }, async () => {
    const { page } = await start();
    const t = (id: string) => page.getByTestId(id);
    await t('wizard-step-store').waitFor();
    await t('store-external').check();
    // The default (this machine) is fine.
    assert.equal(await t('store-url').inputValue(), 'http://127.0.0.1:3210');
    assert.equal(await t('store-url-warning').count(), 0);
    const cases: [string, boolean][] = [
      ['http://nas.local:3210', true],
      ['http://10.0.0.5:3210', true],
      ['HTTP://192.168.1.20', true],
      ['http://[fe80::1]:3210', true],
      ['https://nas.local:3210', false],
      ['http://localhost:3210', false],
      ['http://127.8.9.10:3210', false],
      ['http://[::1]:3210', false],
      ['not a url', false],
    ];
    for (const [url, warned] of cases) {
      await t('store-url').fill(url);
      await eventually(async () => assert.equal(await t('store-url-warning').count(), warned ? 1 : 0, url));
    }
    await t('store-url').fill('http://nas.local:3210');
    await eventually(async () =>
      assert.match(
        (await t('store-url-warning').textContent()) ?? '',
        /its sync key and your assets would cross the network unencrypted/,
      ),
    );
    assert.equal(
      await t('store-url').getAttribute('aria-describedby'),
      await t('store-url-warning').getAttribute('id'),
    );
    // A warning, not a refusal: the user may still go on.
    await t('store-api-key').fill('good-key');
    assert.equal(await t('wizard-next').isDisabled(), false);
  });
});
