//! A tokio runtime whose threads live in another network namespace, so that in-process
//! servers and iroh endpoints can run inside a site: a socket belongs to the namespace of the
//! thread that creates it, and threads inherit their creator's namespace.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A runtime (one worker thread) in a network namespace. Spawn async tasks on it with
/// [`NetnsRuntime::spawn`]; everything they bind, connect or resolve happens in the
/// namespace. Dropping it stops the runtime (tasks get 2 s). Drop it before the testbed.
pub struct NetnsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NetnsRuntime {
    /// A runtime in the named namespace (`/var/run/netns/<netns>`).
    pub fn new(netns: &str) -> io::Result<NetnsRuntime> {
        let path = format!("/var/run/netns/{netns}");
        let (tx, rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{netns}"))
            .spawn(move || {
                let rt = File::open(&path).and_then(|ns| {
                    // SAFETY: setns on a valid namespace fd changes only this thread; the
                    // runtime's workers, spawned from it below, inherit the namespace.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .enable_all()
                        .build()
                });
                let rt = match rt {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                // Blocking pool threads are spawned by whichever thread asks for one: only
                // tasks of this runtime (in the namespace) should.
                rt.block_on(async {
                    let _ = stopped.await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })?;
        let handle = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| io::Error::other("the namespace's runtime did not start"))??;
        Ok(NetnsRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `fut` on the runtime (in the namespace); await the handle from anywhere.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }
}

impl Drop for NetnsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
