//! A CAN Sync site on the testbed: its store and its agent, placed the way every WAN test
//! and the `wan` bench need them.

use std::path::Path;

use super::Testbed;
use crate::{Agent, KEY, Service};

impl Testbed {
    /// Site `i`'s CAN Service (in the caller's namespace, on the site's veth, so the test
    /// reads it without crossing the emulated link; in `dir/svc-<i>`) and its agent (in the
    /// site, bound to the site's address; in `dir/agent-<i>`), with `extra_yaml` added to
    /// the agent's config.
    pub fn store_and_agent(
        &self,
        i: usize,
        dir: &Path,
        passphrase: &str,
        extra_yaml: &str,
    ) -> (Service, Agent) {
        let s = self.site(i);
        let svc = Service::start_on(
            &dir.join(format!("svc-{i}")),
            &format!("sync_api_key: {KEY}\n"),
            &format!("{}:0", s.host_addr),
        );
        let agent = Agent::start_in(
            &dir.join(format!("agent-{i}")),
            &svc.url,
            KEY,
            passphrase,
            &format!("{}{extra_yaml}", s.bind_yaml()),
            &s.netns,
        );
        (svc, agent)
    }
}
