//! LAN discovery: iroh's mDNS lookup under a service name derived from the passphrase.
//! Anyone on the LAN can advertise under that name, so what it reports are candidates,
//! dialled within the dialer's bounds and trusted only once admitted.

use std::sync::Arc;

use futures_util::StreamExt;
use iroh_mdns_address_lookup::DiscoveryEvent;

use crate::candidates::Source;
use crate::context::Context;

pub(crate) type Events = std::pin::Pin<Box<dyn futures_util::Stream<Item = DiscoveryEvent> + Send>>;

pub(crate) async fn run(ctx: Arc<Context>, mut events: Events) {
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = ctx.cancelled() => return,
        };
        match ev {
            Some(DiscoveryEvent::Discovered { endpoint_info, .. }) => {
                ctx.discover(endpoint_info.into_endpoint_addr(), Source::Discovered);
            }
            Some(_) => {}
            None => return,
        }
    }
}
