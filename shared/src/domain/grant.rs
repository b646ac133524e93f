//! The grant: the refresh token and the account it belongs to.

use super::Secret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What identifies the signed-in account for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccountKey {
    Microsoft { tid: String, oid: String },
    Issuer { iss: String, sub: String },
}

/// What an app-only connection's status and tokens name as their account:
/// no person signs in.
pub const APP_ONLY_ACCOUNT: &str = "app-only";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub key: AccountKey,
    /// What humans see: `preferred_username`, `email` or `sub`.
    pub display: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Grant {
    pub refresh_token: Secret,
    pub account: Account,
    #[serde(with = "time::serde::rfc3339")]
    pub consented_at: OffsetDateTime,
    /// When the refresh token was last redeemed (or obtained).
    #[serde(with = "time::serde::rfc3339")]
    pub refreshed_at: OffsetDateTime,
}

impl Grant {
    pub fn new(refresh_token: Secret, account: Account, now: OffsetDateTime) -> Self {
        Self {
            refresh_token,
            account,
            consented_at: now,
            refreshed_at: now,
        }
    }

    /// The grant after a refresh: the newest refresh token wins, and the old
    /// one is kept when the answer carried none.
    pub fn rotated(&self, newer: Option<Secret>, now: OffsetDateTime) -> Self {
        Self {
            refresh_token: newer.unwrap_or_else(|| self.refresh_token.clone()),
            refreshed_at: now,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn grant() -> Grant {
        let account = Account {
            key: AccountKey::Issuer {
                iss: "i".into(),
                sub: "s".into(),
            },
            display: "a".into(),
        };
        Grant::new(
            Secret::new("rt-1"),
            account,
            datetime!(2026-11-28 12:00 UTC),
        )
    }

    #[test]
    fn rotation_keeps_the_newest_token_and_the_old_one_when_none_came() {
        let now = datetime!(2026-11-28 13:00 UTC);
        let grant = grant();
        assert_eq!(
            grant
                .rotated(Some(Secret::new("rt-2")), now)
                .refresh_token
                .expose(),
            "rt-2"
        );
        let kept = grant.rotated(None, now);
        assert_eq!(kept.refresh_token.expose(), "rt-1");
        assert_eq!(kept.refreshed_at, now);
    }
}
