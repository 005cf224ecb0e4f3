//! Which page the main window showed, and History's filter: kept here, in memory, because
//! closing the window destroys the webview and everything in it (`crate::window`). The
//! next window reads it back (`ui_view`) and opens where the last one was. Not saved to
//! disk: a new start of the app opens on Peers with no filter.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::AppError;
use super::history::DirectionFilter;

/// The longest History filter kept; the page accepts whatever is typed, this only bounds
/// what a (possibly subverted) page can park in the backend's memory.
pub const MAX_FILTER_CHARS: usize = 200;
/// History keeps its newest 10,000 rows; no page starts beyond them.
pub const MAX_OFFSET: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UiPage {
    Pairing,
    Peers,
    History,
    Trash,
    Settings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryView {
    pub text: String,
    pub direction: DirectionFilter,
    pub offset: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiView {
    pub page: UiPage,
    pub history: HistoryView,
}

impl UiView {
    fn check(&self) -> Result<(), AppError> {
        if self.history.text.chars().count() > MAX_FILTER_CHARS {
            return Err(AppError::invalid(format!(
                "history.text: at most {MAX_FILTER_CHARS} characters"
            )));
        }
        if self.history.offset > MAX_OFFSET {
            return Err(AppError::invalid(format!(
                "history.offset: at most {MAX_OFFSET}"
            )));
        }
        Ok(())
    }
}

/// The last view the UI reported; `None` until it reports one (or after a reset).
#[derive(Default)]
pub struct UiViews(Mutex<Option<UiView>>);

impl UiViews {
    pub fn get(&self) -> Option<UiView> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, view: UiView) -> Result<(), AppError> {
        view.check()?;
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(view);
        Ok(())
    }

    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ErrorCode;

    fn view(text: &str, offset: u32) -> UiView {
        UiView {
            page: UiPage::History,
            history: HistoryView {
                text: text.into(),
                direction: DirectionFilter::Sent,
                offset,
            },
        }
    }

    #[test]
    fn keeps_the_last_view_and_bounds_it() {
        let v = UiViews::default();
        assert_eq!(v.get(), None);
        v.set(view("photo", 50)).unwrap();
        assert_eq!(v.get(), Some(view("photo", 50)));
        let long = "é".repeat(MAX_FILTER_CHARS + 1);
        assert_eq!(
            v.set(view(&long, 0)).unwrap_err().code,
            ErrorCode::InvalidInput
        );
        assert_eq!(
            v.set(view("", MAX_OFFSET + 1)).unwrap_err().code,
            ErrorCode::InvalidInput
        );
        assert_eq!(
            v.get(),
            Some(view("photo", 50)),
            "a refused view changes nothing"
        );
        v.clear();
        assert_eq!(v.get(), None);
    }

    #[test]
    fn wire_format_is_the_documented_one() {
        let json = serde_json::json!({
            "page": "history",
            "history": { "text": "photo", "direction": "sent", "offset": 50 }
        });
        let v: UiView = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(v, view("photo", 50));
        assert_eq!(serde_json::to_value(&v).unwrap(), json);
        let unknown = serde_json::json!({
            "page": "history", "extra": 1,
            "history": { "text": "", "direction": "all", "offset": 0 }
        });
        assert!(serde_json::from_value::<UiView>(unknown).is_err());
        let bad_page = serde_json::json!({
            "page": "wizard",
            "history": { "text": "", "direction": "all", "offset": 0 }
        });
        assert!(serde_json::from_value::<UiView>(bad_page).is_err());
    }
}
