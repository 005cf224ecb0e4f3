//! `can-sync status` for people: the agent's status (as the control socket sends it, JSON)
//! turned into a few lines. Pure, so it is tested without an agent.

use serde_json::Value;

/// Bytes for people: "512 B", "1.5 MB" (decimal units, like the app).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The one-word state, as the tray says it.
pub fn state(status: &Value) -> &'static str {
    if status["paused"].as_bool() == Some(true) {
        "paused"
    } else if status["store_online"].as_bool() == Some(false) {
        "store offline"
    } else if num(status, "pending") + num(status, "in_flight") > 0 {
        "syncing"
    } else if status["peers"].as_array().is_none_or(|p| p.is_empty()) {
        "no peers"
    } else {
        "up to date"
    }
}

/// The status as `can-sync status` prints it.
pub fn render(status: &Value) -> String {
    let id = text(status, "endpoint_id");
    let mut out = format!(
        "CAN Sync agent \"{}\" ({}): {}\n",
        text(status, "device_name"),
        id.get(..10).unwrap_or(id),
        state(status)
    );
    out += &format!(
        "store: {}, {} assets; {} pending, {} in flight\n",
        if status["store_online"].as_bool() == Some(true) {
            "online"
        } else {
            "offline"
        },
        num(status, "local_assets"),
        num(status, "pending"),
        num(status, "in_flight"),
    );
    out += &format!(
        "sent {} assets ({}), received {} assets ({})\n",
        num(status, "assets_sent"),
        bytes(num(status, "bytes_sent")),
        num(status, "assets_received"),
        bytes(num(status, "bytes_received")),
    );
    let peers = status["peers"].as_array().cloned().unwrap_or_default();
    out += &format!("peers: {}\n", peers.len());
    for p in &peers {
        let pid = text(p, "endpoint_id");
        let rtt = p["rtt_ms"]
            .as_f64()
            .map(|ms| format!(", {ms:.0} ms"))
            .unwrap_or_default();
        out += &format!(
            "  {} ({}) {}{rtt}: sent {}, received {}\n",
            text(p, "device_name"),
            pid.get(..10).unwrap_or(pid),
            text(p, "path"),
            num(p, "assets_sent"),
            num(p, "assets_received"),
        );
    }
    if let Some(e) = status["last_error"].as_str() {
        out += &format!("last error: {e}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_peers_counts_and_state() {
        let status = serde_json::json!({
            "endpoint_id": "abcdef0123456789", "device_name": "nas", "paused": false,
            "store_online": true, "local_assets": 42, "pending": 0, "in_flight": 0,
            "assets_sent": 3, "bytes_sent": 1_500_000, "assets_received": 1, "bytes_received": 10,
            "peers": [{"endpoint_id": "0123456789abcdef", "device_name": "laptop",
                       "path": "direct", "rtt_ms": 3.2, "assets_sent": 3, "assets_received": 1}],
            "last_error": null
        });
        let text = render(&status);
        assert!(text.starts_with("CAN Sync agent \"nas\" (abcdef0123): up to date\n"));
        assert!(text.contains("42 assets"));
        assert!(text.contains("sent 3 assets (1.5 MB)"));
        assert!(text.contains("laptop (0123456789) direct, 3 ms"));
        let mut paused = status.clone();
        paused["paused"] = true.into();
        assert_eq!(state(&paused), "paused");
        assert_eq!(bytes(999), "999 B");
        // Whatever the agent sends, rendering never panics.
        let _ = render(&serde_json::json!({"peers": 5, "endpoint_id": "ü"}));
    }
}
