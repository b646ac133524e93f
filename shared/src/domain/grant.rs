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
