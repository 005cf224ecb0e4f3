//! A notification reaches a real notification server on a private session bus, with the
//! peer-chosen names in it cleaned (format characters) and, in the body, escaped when the
//! server parses markup.

mod common;

use can_sync_app::backend::coalesce::Note;
use can_sync_app::backend::notifier;
use can_testkit::desktop::SessionBus;
use common::NotificationServer;
use std::time::Duration;

async fn show(note: Note) {
    tokio::task::spawn_blocking(move || notifier::show(&note))
        .await
        .unwrap()
        .expect("shown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_reaches_the_notification_server() {
    let bus = SessionBus::start();
    common::use_bus(&bus);
    let server = NotificationServer::start(&bus.address).await;
    show(Note {
        summary: "New asset from Laptop".into(),
        body: "Urlaub 2026.jpg".into(),
    })
    .await;
    let got = server.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].app_name, "CAN Sync");
    assert_eq!(got[0].summary, "New asset from Laptop");
    assert_eq!(got[0].body, "Urlaub 2026.jpg");

    // A hostile peer: markup and a right-to-left override in its device and asset names.
    let hostile = Note {
        summary: "New asset from <b>Eve</b>\u{202E}".into(),
        body: "<b>invoice</b> & <a href=\"https://evil.example\">x</a>\u{202E}fdp.exe".into(),
    };
    show(hostile.clone()).await;
    let got = server.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    // The summary is plain text by the specification: cleaned, shown literally.
    assert_eq!(got[1].summary, "New asset from <b>Eve</b>");
    assert_eq!(
        got[1].body,
        "&lt;b&gt;invoice&lt;/b&gt; &amp; &lt;a href=&quot;https://evil.example&quot;&gt;x&lt;/a&gt;fdp.exe"
    );
    assert!(!got[1].body.contains('\u{202E}') && !got[1].summary.contains('\u{202E}'));

    // A server that shows the body literally gets it cleaned, not escaped.
    server.set_capabilities(&["body"]);
    show(hostile).await;
    let got = server.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[2].body,
        "<b>invoice</b> & <a href=\"https://evil.example\">x</a>fdp.exe"
    );
}
