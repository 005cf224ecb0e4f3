// Injected into the page before its scripts (page.addInitScript): a stand-in for the
// window.__TAURI_INTERNALS__ that Tauri provides, modelled on @tauri-apps/api/mocks.
// Commands go to the Node-side fake backend through window.__fakeInvoke (page.exposeFunction);
// events are delivered with window.__fake.emit(event, payload).
(() => {
  const w = /** @type {any} */ (window);
  /** @type {Map<number, (data: unknown) => unknown>} */
  const callbacks = new Map();
  /** @type {Map<string, {eventId: number, handler: number}[]>} */
  const listeners = new Map();
  let nextCallback = 1;
  let nextEventId = 1;

  /** @param {((data: unknown) => unknown) | undefined} cb @param {boolean} once */
  function transformCallback(cb, once = false) {
    const id = nextCallback++;
    callbacks.set(id, (data) => {
      if (once) callbacks.delete(id);
      return cb && cb(data);
    });
    return id;
  }

  /** @param {string} event @param {number} eventId */
  function removeListener(event, eventId) {
    const list = listeners.get(event);
    if (!list) return;
    const i = list.findIndex((l) => l.eventId === eventId);
    if (i >= 0) {
      callbacks.delete(list[i].handler);
      list.splice(i, 1);
    }
  }

  /** @param {string} cmd @param {Record<string, any>} [args] */
  async function invoke(cmd, args = {}) {
    if (cmd === 'plugin:event|listen') {
      const eventId = nextEventId++;
      const list = listeners.get(args.event) ?? [];
      list.push({ eventId, handler: args.handler });
      listeners.set(args.event, list);
      return eventId;
    }
    if (cmd === 'plugin:event|unlisten') {
      removeListener(args.event, args.eventId);
      return null;
    }
    const res = await w.__fakeInvoke(cmd, JSON.parse(JSON.stringify(args ?? {})));
    if (res.ok) return res.value;
    throw res.error;
  }

  w.__TAURI_INTERNALS__ = {
    invoke,
    transformCallback,
    unregisterCallback: (/** @type {number} */ id) => callbacks.delete(id),
    runCallback: (/** @type {number} */ id, /** @type {unknown} */ data) => callbacks.get(id)?.(data),
    callbacks,
    metadata: {
      currentWindow: { label: 'main' },
      currentWebview: { windowLabel: 'main', label: 'main' },
    },
  };
  w.__TAURI_EVENT_PLUGIN_INTERNALS__ = { unregisterListener: removeListener };
  w.__fake = {
    /** @param {string} event */
    hasListener: (event) => (listeners.get(event)?.length ?? 0) > 0,
    /** @param {string} event @param {unknown} payload */
    emit(event, payload) {
      const list = [...(listeners.get(event) ?? [])];
      for (const l of list) callbacks.get(l.handler)?.({ event, id: l.eventId, payload });
      return list.length;
    },
  };
})();
