//! `[notify]`: where and how webhook events are delivered.

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Where events are POSTed (http:// or https://); none: no notification.
    pub webhook_url: Option<String>,
    /// Also send an event when a dump is processed.
    pub on_processed: bool,
    /// Delivery attempts per event (the first try included).
    pub attempts: u32,
    /// Timeout of one attempt, in seconds.
    pub timeout: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_url: None,
            on_processed: false,
            attempts: 4,
            timeout: 10,
        }
    }
}

impl NotifyConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::Config(format!(
                "notify.webhook_url: {url:?} is not an http:// or https:// URL"
            )));
        }
        if self.attempts == 0 {
            return Err(Error::Config("notify.attempts: must be at least 1".into()));
        }
        if self.timeout == 0 {
            return Err(Error::Config("notify.timeout: must be at least 1".into()));
        }
        Ok(())
    }
}
