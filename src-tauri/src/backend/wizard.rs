//! The first-run wizard as a pure state machine: store → passphrase → device → done.
//! It validates each step's input and collects the answers; the backend does the I/O
//! around it (testing a store connection, the keychain, starting the engine).

use can_sync::Secret;
use serde::{Deserialize, Serialize};

use super::error::{AppError, ErrorCode};
use super::passphrase::{self, Verdict};

/// The store the user picked, as it comes from the UI.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreChoice {
    Builtin,
    External { url: String, api_key: String },
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Builtin => f.write_str("Builtin"),
            StoreChoice::External { url, .. } => write!(f, "External({url}, key: ***)"),
        }
    }
}

impl StoreChoice {
    /// Checks the URL and key are usable; does not connect.
    pub fn validate(&self) -> Result<(), AppError> {
        if let StoreChoice::External { url, api_key } = self {
            validate_url(url)?;
            if api_key.trim().is_empty() {
                return Err(AppError::invalid(
                    "Sync API key: enter the key from the CAN Service's configuration.",
                ));
            }
        }
        Ok(())
    }
}

pub fn validate_url(url: &str) -> Result<(), AppError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && reqwest::Url::parse(url).is_ok_and(|u| u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(format!(
            "CAN Service URL: \"{url}\" is not an http:// or https:// address"
        )))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Store,
    Passphrase,
    Device,
    Done,
}

/// One answer from the UI.
#[derive(Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Input {
    Store { store: StoreChoice },
    Passphrase { passphrase: String, generated: bool },
    Device { device_name: String },
    Back,
}

/// Everything the wizard collected, handed to the backend when the last step is answered.
#[derive(Debug, Clone)]
pub struct Answers {
    pub store: StoreChoice,
    pub passphrase: Secret,
    pub device_name: String,
}

#[derive(Debug, Default)]
pub struct Wizard {
    step: Option<Step>,
    store: Option<StoreChoice>,
    passphrase: Option<Secret>,
    /// The last passphrase this app generated: only that one is rated by generator entropy.
    last_generated: Option<Secret>,
}

pub const MAX_DEVICE_NAME: usize = 64;

impl Wizard {
    pub fn step(&self) -> Step {
        self.step.unwrap_or(Step::Store)
    }

    pub fn store(&self) -> Option<&StoreChoice> {
        self.store.as_ref()
    }

    pub fn remember_generated(&mut self, passphrase: &str) {
        self.last_generated = Some(Secret::new(passphrase));
    }

    /// Whether `passphrase` is exactly the last one generated here.
    pub fn is_generated(&self, passphrase: &str) -> bool {
        self.last_generated
            .as_ref()
            .is_some_and(|g| g.expose() == passphrase)
    }

    /// Applies one answer. Returns the collected answers when the last step is done. On an
    /// error the step does not change.
    pub fn apply(&mut self, input: Input) -> Result<Option<Answers>, AppError> {
        let step = self.step();
        match (step, input) {
            (_, Input::Back) => {
                self.step = Some(match step {
                    Step::Store | Step::Passphrase => Step::Store,
                    Step::Device => Step::Passphrase,
                    Step::Done => Step::Done,
                });
                Ok(None)
            }
            (Step::Store, Input::Store { store }) => {
                store.validate()?;
                self.store = Some(store);
                self.step = Some(Step::Passphrase);
                Ok(None)
            }
            (
                Step::Passphrase,
                Input::Passphrase {
                    passphrase,
                    generated,
                },
            ) => {
                let generated = generated && self.is_generated(&passphrase);
                let check = passphrase::check(&passphrase, generated);
                if check.verdict == Verdict::Refused {
                    return Err(AppError::new(ErrorCode::WeakPassphrase, check.message));
                }
                self.passphrase = Some(Secret::new(passphrase));
                self.step = Some(Step::Device);
                Ok(None)
            }
            (Step::Device, Input::Device { device_name }) => {
                let name = validate_device_name(&device_name)?;
                let (Some(store), Some(passphrase)) = (self.store.clone(), self.passphrase.clone())
                else {
                    // Unreachable through apply(), but never panic on a state mix-up.
                    self.step = Some(Step::Store);
                    return Err(AppError::invalid(
                        "Setup lost its earlier answers; start again.",
                    ));
                };
                self.step = Some(Step::Done);
                Ok(Some(Answers {
                    store,
                    passphrase,
                    device_name: name,
                }))
            }
            (step, _) => Err(AppError::invalid(format!(
                "That answer does not belong to the current setup step ({})",
                step_name(step)
            ))),
        }
    }

    /// Goes back to a step after the backend could not finish (e.g. the keychain failed).
    pub fn reopen(&mut self, step: Step) {
        self.step = Some(step);
    }
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::Store => "store",
        Step::Passphrase => "passphrase",
        Step::Device => "device",
        Step::Done => "done",
    }
}

pub fn validate_device_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid(
            "Device name: enter a name for this device.",
        ));
    }
    if name.chars().count() > MAX_DEVICE_NAME {
        return Err(AppError::invalid(format!(
            "Device name: at most {MAX_DEVICE_NAME} characters."
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::invalid("Device name: no control characters."));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRONG: &str = "quartz lantern obelisk mango thimble crevice";

    fn external(url: &str, key: &str) -> Input {
        Input::Store {
            store: StoreChoice::External {
                url: url.into(),
                api_key: key.into(),
            },
        }
    }

    #[test]
    fn happy_path_collects_every_answer() {
        let mut w = Wizard::default();
        assert_eq!(w.step(), Step::Store);
        assert!(
            w.apply(Input::Store {
                store: StoreChoice::Builtin
            })
            .unwrap()
            .is_none()
        );
        assert_eq!(w.step(), Step::Passphrase);
        w.apply(Input::Passphrase {
            passphrase: STRONG.into(),
            generated: false,
        })
        .unwrap();
        assert_eq!(w.step(), Step::Device);
        let answers = w
            .apply(Input::Device {
                device_name: "  Laptop ".into(),
            })
            .unwrap()
            .expect("finished");
        assert_eq!(w.step(), Step::Done);
        assert_eq!(answers.device_name, "Laptop");
        assert_eq!(answers.passphrase.expose(), STRONG);
        assert_eq!(answers.store, StoreChoice::Builtin);
    }

    #[test]
    fn weak_passphrase_is_refused_and_the_step_stays() {
        let mut w = Wizard::default();
        w.apply(Input::Store {
            store: StoreChoice::Builtin,
        })
        .unwrap();
        let e = w
            .apply(Input::Passphrase {
                passphrase: "password".into(),
                generated: false,
            })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::WeakPassphrase);
        assert!(
            !e.message.contains("password"),
            "never echo the passphrase: {e}"
        );
        assert_eq!(w.step(), Step::Passphrase);
    }

    #[test]
    fn generated_flag_is_only_trusted_for_the_generated_passphrase() {
        let mut w = Wizard::default();
        w.apply(Input::Store {
            store: StoreChoice::Builtin,
        })
        .unwrap();
        // "password" claimed as generated is still rated by zxcvbn.
        let e = w
            .apply(Input::Passphrase {
                passphrase: "password".into(),
                generated: true,
            })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::WeakPassphrase);
        let g = passphrase::generate();
        w.remember_generated(&g.passphrase);
        w.apply(Input::Passphrase {
            passphrase: g.passphrase,
            generated: true,
        })
        .unwrap();
        assert_eq!(w.step(), Step::Device);
    }

    #[test]
    fn external_store_input_is_validated() {
        let mut w = Wizard::default();
        let e = w.apply(external("ftp://x", "k")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert!(e.message.contains("URL"), "{e}");
        let e = w.apply(external("http://127.0.0.1:3210", " ")).unwrap_err();
        assert!(e.message.contains("API key"), "{e}");
        assert_eq!(w.step(), Step::Store);
        w.apply(external("http://127.0.0.1:3210", "k")).unwrap();
        assert_eq!(w.step(), Step::Passphrase);
    }

    #[test]
    fn back_and_out_of_order_answers() {
        let mut w = Wizard::default();
        let e = w
            .apply(Input::Device {
                device_name: "x".into(),
            })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        w.apply(Input::Store {
            store: StoreChoice::Builtin,
        })
        .unwrap();
        w.apply(Input::Back).unwrap();
        assert_eq!(w.step(), Step::Store);
        w.apply(Input::Store {
            store: StoreChoice::Builtin,
        })
        .unwrap();
        w.apply(Input::Passphrase {
            passphrase: STRONG.into(),
            generated: false,
        })
        .unwrap();
        w.apply(Input::Back).unwrap();
        assert_eq!(w.step(), Step::Passphrase);
    }

    #[test]
    fn device_names_are_checked() {
        assert!(validate_device_name("").is_err());
        assert!(validate_device_name(&"x".repeat(65)).is_err());
        assert!(validate_device_name("a\u{7}b").is_err());
        assert_eq!(validate_device_name(" Büro-PC ").unwrap(), "Büro-PC");
    }

    #[test]
    fn debug_never_shows_the_api_key() {
        let c = StoreChoice::External {
            url: "http://h".into(),
            api_key: "sekrit-key".into(),
        };
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
