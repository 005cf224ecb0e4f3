// Debounced passphrase strength check (check_passphrase), shared by the wizard and Settings.
import { api, toAppError, type PassphraseCheck } from './api';

export const CHECK_DEBOUNCE_MS = 200;

export class PassphraseChecker {
  /** The check for `text`, or null while none is known for the current text. */
  check = $state<PassphraseCheck | null>(null);
  pending = $state(false);
  error = $state<string | null>(null);
  text = $state('');

  #timer: ReturnType<typeof setTimeout> | undefined;
  #seq = 0;

  /** Call on every edit. */
  update(text: string): void {
    this.text = text;
    this.check = null;
    this.error = null;
    clearTimeout(this.#timer);
    const seq = ++this.#seq;
    if (text.length === 0) {
      this.pending = false;
      return;
    }
    this.pending = true;
    this.#timer = setTimeout(async () => {
      try {
        const c = await api.checkPassphrase(text);
        if (seq === this.#seq) this.check = c;
      } catch (e) {
        if (seq === this.#seq) this.error = toAppError(e).message;
      } finally {
        if (seq === this.#seq) this.pending = false;
      }
    }, CHECK_DEBOUNCE_MS);
  }

  /** Usable: non-empty, checked, and not refused (a failed check lets the backend decide). */
  get acceptable(): boolean {
    if (this.text.length === 0 || this.pending) return false;
    return this.check === null ? this.error !== null : this.check.verdict !== 'refused';
  }

  reset(): void {
    clearTimeout(this.#timer);
    this.#seq++;
    this.text = '';
    this.check = null;
    this.pending = false;
    this.error = null;
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#seq++;
  }
}
