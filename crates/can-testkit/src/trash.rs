//! Deletion through the public API and the agent's CLI, for tests of deletion sync.

use serde_json::Value;

use crate::{Agent, Service};

/// `DELETE /api/assets/{hash}`; the status.
pub async fn delete_asset(c: &reqwest::Client, svc: &Service, hash: &str) -> u16 {
    c.delete(svc.url(&format!("/api/assets/{hash}")))
        .send()
        .await
        .expect("DELETE asset")
        .status()
        .as_u16()
}

/// `POST /api/trash/{hash}/restore`; the status.
pub async fn restore_asset(c: &reqwest::Client, svc: &Service, hash: &str) -> u16 {
    c.post(svc.url(&format!("/api/trash/{hash}/restore")))
        .send()
        .await
        .expect("restore asset")
        .status()
        .as_u16()
}

/// The status of `GET /api/assets/{hash}/meta` (200 stored, 404 unknown, 410 deleted).
pub async fn meta_status(c: &reqwest::Client, base_url: &str, hash: &str) -> u16 {
    c.get(format!("{base_url}/api/assets/{hash}/meta"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Hashes in the service's trash.
pub async fn trash_hashes(c: &reqwest::Client, svc: &Service) -> Vec<String> {
    let list: Value = c
        .get(svc.url("/api/trash?limit=1000"))
        .send()
        .await
        .expect("GET trash")
        .json()
        .await
        .expect("trash JSON");
    list["assets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["hash"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Agent {
    /// `can-sync deletions apply|keep` against this agent (the real CLI); its output.
    pub fn release_deletions(&self, apply: bool) -> String {
        let out = crate::command("can-sync", None)
            .args([
                "deletions",
                if apply { "apply" } else { "keep" },
                "--config",
            ])
            .arg(&self.config)
            .output()
            .expect("run can-sync deletions");
        assert!(
            out.status.success(),
            "can-sync deletions failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
