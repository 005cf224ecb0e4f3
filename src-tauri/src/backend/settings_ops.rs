//! The Settings page's actions: read and patch settings (limits and pausing reach the running
//! engine at once), switch stores, change the passphrase, reset this device.

use std::sync::Arc;

use can_sync::Secret;

use super::secrets::SecretKind;
use super::settings::{Settings, SettingsPatch, StoreSetting};
use super::wizard::{StoreChoice, Wizard};
use super::{
    AppError, Backend, ErrorCode, SettingsView, blocking, lock, passphrase, store, store_view,
};

impl Backend {
    pub async fn settings_view(&self) -> SettingsView {
        let running = self.running.lock().await;
        let s = self.settings();
        SettingsView {
            notifications: s.notifications,
            launch_at_login: s.launch_at_login,
            start_hidden: s.start_hidden,
            device_name: s.device_name.clone(),
            store: store_view(&s, running.as_ref()),
            upload_limit: s.upload_limit,
            download_limit: s.download_limit,
            limit_lan: s.limit_lan,
            pause_on_metered: s.pause_on_metered,
            pause_on_battery: s.pause_on_battery,
        }
    }

    /// Saves the patch (all of it or, if a field is invalid, none), then applies what
    /// changed to the running engine at once: limits, and pausing for conditions.
    pub async fn update_settings(
        self: &Arc<Self>,
        patch: &SettingsPatch,
    ) -> Result<SettingsView, AppError> {
        let (before, after) = {
            let mut s = lock(&self.settings);
            let mut next = s.clone();
            next.apply(patch)?;
            next.save(&self.paths.config_dir)?;
            let before = std::mem::replace(&mut *s, next);
            (before, s.clone())
        };
        if before.bandwidth() != after.bandwidth()
            && let Some(r) = self.running.lock().await.as_ref()
        {
            // Read again under the engine's lock: of two patches racing, the engine ends
            // with the limits of the one saved last.
            r.engine.set_bandwidth(self.settings().bandwidth());
        }
        if before.pause_when() != after.pause_when() {
            lock(&self.overrides).reset_changed(before.pause_when(), after.pause_when());
            if after.setup_complete {
                self.watch_conditions_if_needed().await;
            }
            self.apply_pause().await?;
        }
        Ok(self.settings_view().await)
    }

    /// The limits the running engine applies now (`None` when it is not running).
    pub async fn bandwidth_in_force(&self) -> Option<can_sync::BandwidthLimits> {
        let running = self.running.lock().await;
        running.as_ref().map(|r| r.engine.handle().bandwidth())
    }

    /// Switches stores; `None` if the switch to an external store was not confirmed. An
    /// external store receives every asset of the group, so `confirm` (the shell's native
    /// dialog, which a script in the page cannot click) is asked once the store answered.
    pub async fn set_store(
        self: &Arc<Self>,
        choice: StoreChoice,
        confirm: impl Future<Output = bool>,
    ) -> Result<Option<SettingsView>, AppError> {
        choice.validate()?;
        let keychain = self.keychain.clone();
        let setting = match &choice {
            StoreChoice::Builtin => {
                blocking(move || keychain.delete(SecretKind::SyncApiKey)).await?;
                StoreSetting::Builtin
            }
            StoreChoice::External { url, api_key } => {
                let key = Secret::new(api_key.trim());
                store::test(url, &key).await?;
                if !confirm.await {
                    return Ok(None);
                }
                blocking(move || keychain.set(SecretKind::SyncApiKey, &key)).await?;
                StoreSetting::External {
                    url: url.trim_end_matches('/').to_owned(),
                }
            }
        };
        {
            let mut s = lock(&self.settings);
            s.store = Some(setting);
            s.save(&self.paths.config_dir)?;
        }
        self.restart_engine().await?;
        Ok(Some(self.settings_view().await))
    }

    pub async fn change_passphrase(self: &Arc<Self>, p: &str) -> Result<(), AppError> {
        let check = passphrase::check(p, lock(&self.wizard).is_generated(p));
        if check.verdict == passphrase::Verdict::Refused {
            return Err(AppError::new(ErrorCode::WeakPassphrase, check.message));
        }
        let keychain = self.keychain.clone();
        let secret = Secret::new(p);
        blocking(move || keychain.set(SecretKind::Passphrase, &secret)).await?;
        self.restart_engine().await
    }

    /// Forgets this device's setup: secrets, settings, history, node identity and
    /// remembered peers. The built-in store's assets stay (they are the user's data).
    pub async fn reset_device(&self) -> Result<(), AppError> {
        self.stop_engine().await;
        let keychain = self.keychain.clone();
        blocking(move || {
            keychain.delete(SecretKind::Passphrase)?;
            keychain.delete(SecretKind::SyncApiKey)
        })
        .await?;
        self.history.clear()?;
        let engine_dir = self.paths.data_dir.join("engine");
        if engine_dir.exists() {
            std::fs::remove_dir_all(&engine_dir)
                .map_err(|e| AppError::io("cannot remove the device identity", e))?;
        }
        {
            let mut s = lock(&self.settings);
            let fresh = Settings {
                advanced: s.advanced.clone(),
                ..Settings::default()
            };
            fresh.save(&self.paths.config_dir)?;
            *s = fresh;
        }
        *lock(&self.wizard) = Wizard::default();
        *lock(&self.error) = None;
        self.emit_state().await;
        Ok(())
    }
}
