//! The Tokio runtime the engine is meant to run on: the headless agent's, the desktop app's
//! (set as Tauri's async runtime) and the benchmarks'.
//!
//! Multi-threaded with at least [`MIN_WORKERS`] workers, whatever the core count. noq
//! (iroh's QUIC) keeps each connection's state behind a blocking mutex: a task that reads
//! or writes a stream while the connection's driver holds it (building and encrypting a
//! batch of packets) blocks its worker thread, not only itself. With one worker per core,
//! a 2-core machine then often has a core with nothing to run while the other side of a
//! transfer, or the store's hashing, waits in the queue. Spare workers cost an idle thread
//! each (parked, no wake-ups) and keep the cores busy: on 2 cores the in-process mirror
//! went from 0.50 of a raw iroh stream with 2 workers to 0.63–0.66 with 3, 4 or 8
//! (bench/README, "Worker threads").

/// The fewest worker threads the engine's runtime has.
pub const MIN_WORKERS: usize = 4;

/// Worker threads for this machine: one per core, at least [`MIN_WORKERS`].
pub fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(MIN_WORKERS)
}

/// A multi-threaded runtime with [`workers`] workers, I/O and timers on.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_has_spare_workers_on_small_machines() {
        let runtime = build().expect("runtime");
        assert!(runtime.metrics().num_workers() >= MIN_WORKERS);
        assert_eq!(runtime.metrics().num_workers(), workers());
        // It runs tasks on its workers, not only on the calling thread.
        let on_worker = runtime.block_on(async {
            tokio::spawn(async { std::thread::current().id() })
                .await
                .expect("task")
        });
        assert_ne!(on_worker, std::thread::current().id());
    }
}
