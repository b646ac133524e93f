use serde::{Deserialize, Serialize};
use std::fmt;

/// A secret string (token, client secret, code, key). Its `Debug` is redacted
/// and it has no `Display`, so it cannot slip into a log line or error message
/// by accident; reading it takes an explicit [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What a JSON error says without the data: its kind and position.
/// serde_json's own messages quote the values they refuse (`invalid type:
/// string "…"`), and the refused value may be a token or a secret.
pub fn json_error_without_data(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Syntax => "not valid JSON",
        Category::Data => "a value of the wrong type or form, or a missing field",
        Category::Eof => "JSON cut short",
        Category::Io => "JSON that could not be read",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_quote_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Record {
            version: u32,
        }
        let e = serde_json::from_str::<Record>(r#"{"version": "0.AAAA-refresh-token"}"#)
            .expect_err("a string is not a number");
        assert!(e.to_string().contains("0.AAAA"), "serde_json quotes it");
        let reason = json_error_without_data(&e);
        assert!(!reason.contains("0.AAAA"), "{reason}");
        assert!(
            reason.contains("wrong type") && reason.contains("column"),
            "{reason}"
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2-refresh-token");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert!(!format!("{:?}", Some(&secret)).contains("hunter2"));
    }
}
