//! macOS: metered through the Network framework's path monitor (a path the system calls
//! expensive — cellular, a personal hotspot — or constrained — Low Data Mode), battery
//! through IOKit's providing power source, read every [`super::POLL`].
//!
//! The Network framework has no maintained Rust binding yet (objc2-network is a reserved
//! name), so its five C functions are declared here; the monitor calls back on its own
//! dispatch queue.

use std::ffi::c_void;
use std::ptr::NonNull;

use block2::RcBlock;
use dispatch2::DispatchQueue;
use objc2_io_kit::{IOPSCopyPowerSourcesInfo, IOPSGetProvidingPowerSourceType};
use tokio::sync::watch;

use super::Conditions;

#[link(name = "Network", kind = "framework")]
unsafe extern "C" {
    fn nw_path_monitor_create() -> *mut c_void;
    fn nw_path_monitor_set_queue(monitor: *mut c_void, queue: &DispatchQueue);
    fn nw_path_monitor_set_update_handler(
        monitor: *mut c_void,
        handler: &block2::Block<dyn Fn(*mut c_void)>,
    );
    fn nw_path_monitor_start(monitor: *mut c_void);
    fn nw_path_monitor_cancel(monitor: *mut c_void);
    fn nw_path_is_expensive(path: *mut c_void) -> bool;
    fn nw_path_is_constrained(path: *mut c_void) -> bool;
    fn nw_release(object: *mut c_void);
}

/// A started `nw_path_monitor`; cancelled and released on drop.
struct PathMonitor(NonNull<c_void>);

// SAFETY: Network framework objects are reference-counted OS objects, safe to cancel and
// release from any thread.
unsafe impl Send for PathMonitor {}

impl PathMonitor {
    fn start(tx: watch::Sender<Conditions>) -> Option<PathMonitor> {
        // SAFETY: create returns a +1 reference (released in Drop) or null.
        let monitor = NonNull::new(unsafe { nw_path_monitor_create() })?;
        let queue = DispatchQueue::new("net.cansync.desktop.path-monitor", None);
        let handler = RcBlock::new(move |path: *mut c_void| {
            if path.is_null() {
                return;
            }
            // SAFETY: `path` is the nw_path_t the monitor hands to this call.
            let metered = unsafe { nw_path_is_expensive(path) || nw_path_is_constrained(path) };
            tx.send_if_modified(|c| {
                let changed = c.metered != Some(metered);
                c.set_metered(Some(metered));
                changed
            });
        });
        // SAFETY: a live monitor; the queue and the block are retained (copied) by the
        // monitor before these return.
        unsafe {
            nw_path_monitor_set_queue(monitor.as_ptr(), &queue);
            nw_path_monitor_set_update_handler(monitor.as_ptr(), &handler);
            nw_path_monitor_start(monitor.as_ptr());
        }
        Some(PathMonitor(monitor))
    }
}

impl Drop for PathMonitor {
    fn drop(&mut self) {
        // SAFETY: our own reference, released once; after cancel no handler runs again.
        unsafe {
            nw_path_monitor_cancel(self.0.as_ptr());
            nw_release(self.0.as_ptr());
        }
    }
}

pub(super) async fn run(tx: &watch::Sender<Conditions>) {
    let _monitor = PathMonitor::start(tx.clone());
    loop {
        let on_battery = tokio::task::spawn_blocking(on_battery).await.ok().flatten();
        tx.send_if_modified(|c| {
            let changed = c.on_battery != on_battery || !c.read;
            c.set_on_battery(on_battery);
            c.read = true;
            changed
        });
        tokio::time::sleep(super::POLL).await;
    }
}

/// "Battery Power" (or a UPS running on its battery) → on battery; "AC Power" → not.
fn on_battery() -> Option<bool> {
    let info = IOPSCopyPowerSourcesInfo()?;
    // SAFETY: `info` is the snapshot IOPSCopyPowerSourcesInfo returned.
    let kind = unsafe { IOPSGetProvidingPowerSourceType(Some(&*info)) }?.to_string();
    match kind.as_str() {
        "Battery Power" | "UPS Power" => Some(true),
        "AC Power" => Some(false),
        _ => None,
    }
}
