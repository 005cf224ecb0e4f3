// Timers that run only while the page can be seen: a minimised or hidden window does no
// periodic work (a tray app's window may sit minimised all day).

/**
 * Calls `tick` every `ms` while the document is visible; on becoming visible again it
 * calls it at once, then resumes. Returns the stop function.
 */
export function everyWhileVisible(tick: () => void, ms: number): () => void {
  let timer: ReturnType<typeof setInterval> | undefined;
  const start = () => {
    if (timer === undefined) timer = setInterval(tick, ms);
  };
  const stop = () => {
    clearInterval(timer);
    timer = undefined;
  };
  const onChange = () => {
    if (document.hidden) stop();
    else {
      tick();
      start();
    }
  };
  document.addEventListener('visibilitychange', onChange);
  if (!document.hidden) start();
  return () => {
    document.removeEventListener('visibilitychange', onChange);
    stop();
  };
}
