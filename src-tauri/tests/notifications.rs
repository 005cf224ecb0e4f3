//! A notification reaches a real notification server on a private session bus.

mod common;

use can_sync_app::backend::coalesce::Note;
use can_sync_app::backend::notifier;
use can_testkit::desktop::SessionBus;
use common::NotificationServer;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_reaches_the_notification_server() {
    let bus = SessionBus::start();
    common::use_bus(&bus);
    let server = NotificationServer::start(&bus.address).await;
    let note = Note {
        summary: "New asset from Laptop".into(),
        body: "Urlaub 2026.jpg".into(),
    };
    tokio::task::spawn_blocking(move || notifier::show(&note))
        .await
        .unwrap()
        .expect("shown");
    let got = server.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].app_name, "CAN Sync");
    assert_eq!(got[0].summary, "New asset from Laptop");
    assert_eq!(got[0].body, "Urlaub 2026.jpg");
}
