//! Access tokens, one per resource: the only token material displays ever get.

use super::{Grant, Resource, Secret};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessToken {
    pub resource: String,
    pub access_token: Secret,
    pub token_type: String,
    pub scope: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub obtained_at: OffsetDateTime,
}

impl AccessToken {
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        (self.expires_at - now).try_into().unwrap_or(Duration::ZERO)
    }
}

/// Everything token-read needs to answer a display, and nothing more.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AccessTokens {
    /// The account the tokens act for, as humans read it.
    pub account: String,
    /// The connection's resources in order; the first is the default.
    #[serde(default)]
    pub resources: Vec<String>,
    pub tokens: Vec<AccessToken>,
}

/// Idle grants are refreshed anyway after this, far from Microsoft's 90 days.
pub const KEEP_ALIVE: Duration = Duration::from_secs(7 * 86_400);

impl AccessTokens {
    /// The named resource, or the default one.
    pub fn resource_name<'a>(&'a self, requested: Option<&'a str>) -> Option<&'a str> {
        match requested {
            Some(name) => self.resources.iter().any(|r| r == name).then_some(name),
            None => self.resources.first().map(String::as_str),
        }
    }

    pub fn get(&self, resource: &str) -> Option<&AccessToken> {
        self.tokens.iter().find(|t| t.resource == resource)
    }

    /// Replaces the token of its resource, keeping the order of `resources`.
    pub fn put(&mut self, token: AccessToken) {
        match self
            .tokens
            .iter_mut()
            .find(|t| t.resource == token.resource)
        {
            Some(slot) => *slot = token,
            None => self.tokens.push(token),
        }
    }

    /// Merges tokens written by someone else meanwhile: per resource, the one
    /// that lives longer wins.
    pub fn merge_newer(&mut self, other: &AccessTokens) {
        for theirs in &other.tokens {
            let ours_is_newer = self
                .get(&theirs.resource)
                .is_some_and(|ours| ours.expires_at >= theirs.expires_at);
            if !ours_is_newer {
                self.put(theirs.clone());
            }
        }
    }

    /// Whether a refresh pass should redeem the refresh token now: a resource
    /// has no token or less than `margin` left, or the grant has been idle for
    /// [`KEEP_ALIVE`].
    pub fn is_due(
        &self,
        resources: &[Resource],
        grant: &Grant,
        margin: Duration,
        now: OffsetDateTime,
    ) -> bool {
        let token_due = resources.iter().any(|resource| {
            self.get(&resource.name)
                .is_none_or(|token| token.remaining(now) < margin)
        });
        let idle: Duration = (now - grant.refreshed_at)
            .try_into()
            .unwrap_or(Duration::ZERO);
        token_due || idle >= KEEP_ALIVE
    }

    pub fn earliest_expiry(&self) -> Option<OffsetDateTime> {
        self.tokens.iter().map(|t| t.expires_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Account, AccountKey, Cloud};
    use time::macros::datetime;

    fn token(resource: &str, expires_at: OffsetDateTime) -> AccessToken {
        AccessToken {
            resource: resource.into(),
            access_token: Secret::new("at"),
            token_type: "Bearer".into(),
            scope: String::new(),
            expires_at,
            obtained_at: expires_at - time::Duration::hours(1),
        }
    }

    fn grant(refreshed_at: OffsetDateTime) -> Grant {
        let account = Account {
            key: AccountKey::Issuer {
                iss: "i".into(),
                sub: "s".into(),
            },
            display: "a".into(),
        };
        Grant {
            refreshed_at,
            ..Grant::new(Secret::new("rt"), account, refreshed_at)
        }
    }

    const MARGIN: Duration = Duration::from_secs(20 * 60);

    #[test]
    fn due_when_a_resource_is_missing_or_close_to_expiry() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let resources = Resource::presets("ews,graph", Cloud::Global).unwrap();
        let mut access = AccessTokens::default();
        access.put(token("ews", now + time::Duration::hours(1)));
        assert!(
            access.is_due(&resources, &grant(now), MARGIN, now),
            "graph missing"
        );
        access.put(token("graph", now + time::Duration::minutes(50)));
        assert!(!access.is_due(&resources, &grant(now), MARGIN, now));
        access.put(token("graph", now + time::Duration::minutes(19)));
        assert!(access.is_due(&resources, &grant(now), MARGIN, now));
    }

    #[test]
    fn idle_grants_are_kept_alive() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let resources = Resource::presets("ews", Cloud::Global).unwrap();
        let mut access = AccessTokens::default();
        access.put(token("ews", now + time::Duration::hours(1)));
        let week_ago = now - time::Duration::days(7);
        assert!(access.is_due(&resources, &grant(week_ago), MARGIN, now));
    }

    #[test]
    fn merging_keeps_the_longer_lived_token_per_resource() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let mut ours = AccessTokens::default();
        ours.put(token("ews", now + time::Duration::hours(1)));
        let mut theirs = AccessTokens::default();
        theirs.put(token("ews", now + time::Duration::hours(2)));
        theirs.put(token("graph", now));
        ours.merge_newer(&theirs);
        assert_eq!(
            ours.get("ews").unwrap().expires_at,
            now + time::Duration::hours(2)
        );
        assert!(ours.get("graph").is_some());
    }
}
