//! Windows: the Internet connection profile's cost (a "metered connection" in Settings is
//! `Fixed` or `Variable`) and `GetSystemPowerStatus` (AC line offline: on battery). Both
//! are cheap calls, read every [`super::POLL`] on a blocking thread.

use tokio::sync::watch;
use windows::Networking::Connectivity::{NetworkCostType, NetworkInformation};
use windows::Win32::System::Power::{GetSystemPowerStatus, SYSTEM_POWER_STATUS};

use super::Conditions;

pub(super) async fn run(tx: &watch::Sender<Conditions>) {
    loop {
        let (metered, on_battery) = tokio::task::spawn_blocking(|| (metered(), on_battery()))
            .await
            .unwrap_or((None, None));
        tx.send_if_modified(|c| {
            let mut next = *c;
            next.set_metered(metered);
            next.set_on_battery(on_battery);
            next.read = true;
            let changed = *c != next;
            *c = next;
            changed
        });
        tokio::time::sleep(super::POLL).await;
    }
}

/// No Internet profile (offline) or an error: unknown.
fn metered() -> Option<bool> {
    let profile = NetworkInformation::GetInternetConnectionProfile().ok()?;
    let cost = profile.GetConnectionCost().ok()?;
    let kind = cost.NetworkCostType().ok()?;
    Some(kind == NetworkCostType::Fixed || kind == NetworkCostType::Variable)
}

/// `ACLineStatus`: 0 offline (battery), 1 online, 255 unknown.
fn on_battery() -> Option<bool> {
    let mut status = SYSTEM_POWER_STATUS::default();
    // SAFETY: a plain out-parameter the call fills in.
    unsafe { GetSystemPowerStatus(&mut status) }.ok()?;
    match status.ACLineStatus {
        0 => Some(true),
        1 => Some(false),
        _ => None,
    }
}
