// Small display helpers. Pure functions, no Svelte.

const UNITS = ['KB', 'MB', 'GB', 'TB', 'PB'];

/** 0 B, 999 B, 1.2 KB, 34 MB (decimal units, as file managers show them). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '–';
  if (n < 1000) return `${Math.round(n)} B`;
  let v = n;
  let i = -1;
  do {
    v /= 1000;
    i++;
  } while (v >= 999.5 && i < UNITS.length - 1);
  return `${v < 9.95 ? v.toFixed(1) : Math.round(v)} ${UNITS[i]}`;
}

/** A transfer rate: "0 B/s", "850 KB/s", "3.2 MB/s". */
export function formatRate(bytesPerSec: number): string {
  if (!Number.isFinite(bytesPerSec) || bytesPerSec < 0) return '–';
  return `${formatBytes(bytesPerSec)}/s`;
}

/**
 * Time left, roughly, as people say it: "less than a minute", "about 2 min",
 * "about 1 h 25 min" (to 5 minutes), "about 14 h", "about 3 days". "–" if unknown.
 */
export function formatTimeLeft(secs: number): string {
  if (!Number.isFinite(secs) || secs < 0) return '–';
  if (secs < 60) return 'less than a minute';
  const min = Math.round(secs / 60);
  if (min < 60) return `about ${min} min`;
  if (min < 600) {
    const rounded = Math.round(min / 5) * 5;
    const h = Math.floor(rounded / 60);
    const m = rounded % 60;
    return m === 0 ? `about ${h} h` : `about ${h} h ${m} min`;
  }
  const h = Math.round(min / 60);
  if (h < 48) return `about ${h} h`;
  return `about ${Math.round(h / 24)} days`;
}

/** "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago", then a date. */
export function formatRelative(iso: string, now: number = Date.now()): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '–';
  const s = Math.round((now - t) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.floor(h / 24);
  if (d < 7) return `${d} d ago`;
  return new Date(t).toLocaleDateString();
}

/** Local date and time for tables: "14:03" today, otherwise "12 May, 14:03" (or with year). */
export function formatTime(iso: string, now: number = Date.now()): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '–';
  const d = new Date(t);
  const today = new Date(now);
  const time = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === today.toDateString()) return time;
  const opts: Intl.DateTimeFormatOptions =
    d.getFullYear() === today.getFullYear()
      ? { day: 'numeric', month: 'short' }
      : { day: 'numeric', month: 'short', year: 'numeric' };
  return `${d.toLocaleDateString(undefined, opts)}, ${time}`;
}

/** Full local timestamp, for tooltips. */
export function formatFullTime(iso: string): string {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toLocaleString();
}

/** First 10 characters of an endpoint id or hash. */
export function shortId(id: string): string {
  return id.slice(0, 10);
}

export function plural(n: number, one: string, many: string = `${one}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/**
 * A peer-chosen name as shown: Unicode format characters (Cf: U+202E right-to-left override,
 * zero-width characters…) removed, so `invoice\u202Efdp.exe` cannot read as "invoiceexe.pdf";
 * control characters become spaces. Text only: Svelte never renders it as HTML anyway.
 */
export function peerText(s: string): string {
  return s.replace(/\p{Cf}/gu, '').replace(/\p{Cc}/gu, ' ');
}
