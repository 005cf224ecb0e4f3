//! The two config parsers: the CAN Service's `config.yaml` and the agent's.
//!
//! Inputs are YAML documents built from the real keys with arbitrary values (so parsing
//! gets past "unknown key"), or arbitrary text. Checked beyond "no panic": a secret given
//! under a secret key never shows up in an error or in the parsed config's debug output.

use std::path::Path;

use arbitrary::Unstructured;

use super::structured;

/// A value no message may repeat.
const SECRET: &str = "S3cr3t-Fuzz-Token";

const SERVICE_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "sync_api_key",
    "max_asset_bytes",
    "allowed_origins",
    "allowed_hosts",
    "public_api_key",
    "free_space_reserve_bytes",
];

/// The agent's keys as of this writing; a key renamed later still gets fuzzed as text.
const AGENT_KEYS: &[&str] = &[
    "can_service_url",
    "sync_api_key",
    "sync_passphrase",
    "poll_interval_secs",
    "rendezvous_interval_secs",
    "ticket_file",
    "connect_ticket_file",
    "data_dir",
    "bind_addr",
    "relay_urls",
    "pkarr_relays",
    "local_discovery",
    "relay_only",
    "reconcile",
    "device_name",
    "transfer_idle_timeout_secs",
    "allow_weak_passphrase",
];

const VALUES: &[&str] = &[
    "",
    "~",
    "0",
    "-1",
    "18446744073709551616",
    "127.0.0.1:0",
    "[::1]:3210",
    "http://127.0.0.1:3210",
    "https://a.example/",
    "ftp://x",
    "true",
    "[]",
    "[\"http://localhost:5173\"]",
    "[nas.example, \"box:8080\"]",
    "{a: 1}",
    "\"a b\"",
    "./data",
    "/",
    "\"\\u0000\"",
    "*",
    "null",
    "!!binary aGk=",
    "&a [*a]",
    "'",
    "|\n  block",
];

/// Keys whose values are secrets, in either file.
const SECRET_KEYS: &[&str] = &["sync_api_key", "public_api_key", "sync_passphrase"];

/// Ways a secret may be written, well or badly.
fn secret_value(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=9)? {
        0 => SECRET.to_owned(),
        1 => format!("\"{SECRET}\""),
        2 => format!("[{SECRET}]"),
        3 => format!("{{k: {SECRET}}}"),
        4 => format!("\"{SECRET} x\""),
        5 => format!("'{SECRET}"),
        6 => format!("\"{SECRET}\\u0007\""),
        7 => format!("!!int {SECRET}"),
        8 => format!("!!binary {SECRET}"),
        _ => format!("{SECRET}{}", u.arbitrary::<String>()?),
    })
}

/// A YAML document of `keys` with arbitrary values (secrets only under secret keys: the
/// promise is that a key's value is never shown, not that any misplaced text is hidden), or
/// arbitrary text.
fn document(u: &mut Unstructured<'_>, keys: &[&str]) -> arbitrary::Result<String> {
    if u.ratio(1, 5)? {
        return Ok(u.arbitrary::<String>()?.replace(SECRET, ""));
    }
    let mut doc = String::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let key = if u.ratio(1, 10)? {
            u.arbitrary::<String>()?.replace(SECRET, "")
        } else {
            (*u.choose(keys)?).to_owned()
        };
        let value = if SECRET_KEYS.contains(&key.as_str()) && u.ratio(2, 3)? {
            secret_value(u)?
        } else if u.arbitrary()? {
            u.arbitrary::<String>()?.replace(SECRET, "")
        } else {
            (*u.choose(VALUES)?).to_owned()
        };
        doc.push_str(&format!("{key}: {value}\n"));
    }
    Ok(doc)
}

fn assert_no_secret(text: &str, what: &str) {
    assert!(!text.contains(SECRET), "{what} shows a secret: {text}");
}

/// Whether the secret sits only in values of secret keys, so the promise covers it. YAML
/// can carry it elsewhere (a quoted or block scalar of another key swallowing the lines
/// below it; an error may then rightly quote that other value).
fn only_under_secret_keys(text: &str) -> bool {
    use serde_norway::Value;
    let shows = |v: &Value| serde_norway::to_string(v).map_or(true, |t| t.contains(SECRET));
    match serde_norway::from_str::<Value>(text) {
        Ok(Value::Mapping(map)) => map.iter().all(|(k, v)| {
            let secret_key = k.as_str().is_some_and(|k| SECRET_KEYS.contains(&k));
            !shows(k) && (secret_key || !shows(v))
        }),
        Ok(other) => !shows(&other),
        // Broken YAML further down: the typed parser may stop earlier, at a value that
        // swallowed the secret, so where the secret sits cannot be told.
        Err(_) => false,
    }
}

/// The service's config: parse, then validate; the keys never leak into messages.
fn service(text: &str) {
    if !only_under_secret_keys(text) {
        let _ = can_service::Config::parse(text).map(|c| c.validate(None));
        return;
    }
    match can_service::Config::parse(text) {
        Ok(config) => {
            if let Err(e) = config.validate(Some(Path::new("config.yaml"))) {
                assert_no_secret(&e.to_string(), "a validation error");
            }
            assert_no_secret(&format!("{config:?}"), "the config's Debug");
        }
        Err(e) => assert_no_secret(&e, "a parse error"),
    }
}

/// The agent's config (`can_sync::config::EngineConfig`), held to the same promise.
fn agent(text: &str) {
    let path = Path::new("/etc/can-sync/agent.yaml");
    if !only_under_secret_keys(text) {
        let _ = can_sync::config::EngineConfig::parse(text, path);
        return;
    }
    match can_sync::config::EngineConfig::parse(text, path) {
        Ok(config) => assert_no_secret(&format!("{config:?}"), "the agent config's Debug"),
        Err(e) => assert_no_secret(&e.to_string(), "an agent config error"),
    }
}

/// Both parsers on documents made of their keys, or on arbitrary text.
pub fn configs(data: &[u8]) {
    structured(data, |u| {
        if u.arbitrary()? {
            service(&document(u, SERVICE_KEYS)?);
        } else {
            agent(&document(u, AGENT_KEYS)?);
        }
        Ok(())
    })
}
