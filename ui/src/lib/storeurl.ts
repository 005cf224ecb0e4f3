// Whether a store URL would carry the sync API key and the assets over the network
// unencrypted. Pure, no Svelte.

/** Loopback by name or address: 127.0.0.0/8, ::1, localhost (and *.localhost, RFC 6761). */
function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  // The URL parser has already normalised IPv4 forms (127.1, 0x7f.1) to dotted quads.
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * True for an http:// URL to another machine. https:// is fine (TLS), and so is plain http
 * on this machine (nothing crosses the network). Unparseable URLs are not flagged here: the
 * backend rejects them with a message of its own.
 */
export function isCleartextRemote(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url.trim());
  } catch {
    return false;
  }
  return u.protocol === 'http:' && !isLoopbackHost(u.hostname);
}

export const CLEARTEXT_WARNING =
  'This store is reached over plain http on another machine: its sync key and your assets would cross the network unencrypted. Use https, or a store on this computer.';
