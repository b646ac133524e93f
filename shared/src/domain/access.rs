//! Access tokens, one per resource: the only token material displays ever get.

use super::{Resource, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

    /// How long this token lived when it was issued.
    pub fn lifetime(&self) -> Duration {
        (self.expires_at - self.obtained_at)
            .try_into()
            .unwrap_or(Duration::ZERO)
    }

    /// How long before it expires this token is refreshed: `margin`, or
    /// half its lifetime when that is shorter (a token that lives less
    /// than twice the margin would otherwise be due as soon as issued, and
    /// be refreshed on every pass).
    pub fn refresh_margin(&self, margin: Duration) -> Duration {
        margin.min(self.lifetime() / 2)
    }

    /// When this token becomes due for a refresh.
    pub fn due_at(&self, margin: Duration) -> OffsetDateTime {
        self.expires_at - self.refresh_margin(margin)
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

/// On Secrets Manager a refresh makes a version of each of the connection's
/// two secrets, and the product may make at most
/// [`super::records::MAX_PRODUCT_VERSIONS_PER_DAY`] (72) a day: one refresh
/// every 20 minutes, all day.
pub const SECRETS_MANAGER_REFRESH_PERIOD: Duration =
    Duration::from_secs(86_400 / super::records::MAX_PRODUCT_VERSIONS_PER_DAY as u64);

/// Without a version quota a token is refreshed at half its life (see
/// [`AccessToken::refresh_margin`]), as soon as it is due: that half must
/// hold the 30 s a token needs left to be served, and 30 s for the refresh.
pub const SHORTEST_KEPT_FRESH_WITHOUT_QUOTA: Duration = Duration::from_secs(120);

/// The shortest access-token lifetime a store keeps fresh all day with
/// refresh margin `margin`. With Secrets Manager's version quota, a token
/// of lifetime `L` is refreshed every `L - min(margin, L/2)`, which must
/// not be shorter than [`SECRETS_MANAGER_REFRESH_PERIOD`]: `L` at least the
/// period plus the margin, or twice the period (40 minutes with the
/// default 20-minute margin).
pub fn shortest_kept_fresh(counts_versions: bool, margin: Duration) -> Duration {
    if !counts_versions {
        return SHORTEST_KEPT_FRESH_WITHOUT_QUOTA;
    }
    let period = SECRETS_MANAGER_REFRESH_PERIOD;
    (period + margin).min(period * 2)
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

    /// The application permissions (`roles`) each token carries, by
    /// resource; tokens that are not JWTs are left out.
    pub fn application_roles(&self) -> BTreeMap<String, Vec<String>> {
        self.tokens
            .iter()
            .filter_map(|t| {
                let roles = super::claims::application_roles(t.access_token.expose())?;
                Some((t.resource.clone(), roles))
            })
            .collect()
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

    /// Takes the tokens of `other` (written by someone else meanwhile) that
    /// were issued after ours: per resource, the newest token wins, even if
    /// it expires sooner (Entra's tokens live a random 60-90 minutes, and a
    /// newer one may carry a permission the older lacks).
    pub fn keep_newest(&mut self, other: &AccessTokens) {
        for theirs in &other.tokens {
            let ours_is_newer = self
                .get(&theirs.resource)
                .is_some_and(|ours| ours.obtained_at >= theirs.obtained_at);
            if !ours_is_newer {
                self.put(theirs.clone());
            }
        }
    }

    /// When the refresh token was last redeemed: the newest token's issue time.
    pub fn last_refreshed_at(&self) -> Option<OffsetDateTime> {
        self.tokens.iter().map(|t| t.obtained_at).max()
    }

    /// Whether a refresh pass should redeem the refresh token now: a resource
    /// has no token or less than its refresh margin left (`margin`, or half
    /// the token's lifetime: [`AccessToken::refresh_margin`]), or the grant
    /// has been idle for [`KEEP_ALIVE`].
    pub fn is_due(&self, resources: &[Resource], margin: Duration, now: OffsetDateTime) -> bool {
        self.due_at(resources, margin).is_none_or(|at| at <= now)
    }

    /// When a refresh pass should next redeem the refresh token (see
    /// [`Self::is_due`]; a time in the past when it is due already); `None`
    /// for no resources.
    pub fn due_at(&self, resources: &[Resource], margin: Duration) -> Option<OffsetDateTime> {
        let keep_alive = match self.last_refreshed_at() {
            Some(at) => at + KEEP_ALIVE,
            None => OffsetDateTime::UNIX_EPOCH,
        };
        resources
            .iter()
            .map(|resource| {
                self.get(&resource.name)
                    .map_or(OffsetDateTime::UNIX_EPOCH, |token| token.due_at(margin))
            })
            .min()
            .map(|due| due.min(keep_alive))
    }

    /// The least time left of any resource's token (zero when one is
    /// missing); `None` for no resources.
    pub fn most_urgent(&self, resources: &[Resource], now: OffsetDateTime) -> Option<Duration> {
        resources
            .iter()
            .map(|resource| {
                self.get(&resource.name)
                    .map_or(Duration::ZERO, |token| token.remaining(now))
            })
            .min()
    }

    /// The shortest lifetime of these tokens as issued.
    pub fn shortest_lifetime(&self) -> Option<Duration> {
        self.tokens.iter().map(AccessToken::lifetime).min()
    }

    pub fn earliest_expiry(&self) -> Option<OffsetDateTime> {
        self.tokens.iter().map(|t| t.expires_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Cloud;
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

    const MARGIN: Duration = Duration::from_secs(20 * 60);

    #[test]
    fn due_when_a_resource_is_missing_or_close_to_expiry() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let resources = Resource::presets("ews,graph", Cloud::Global).unwrap();
        let mut access = AccessTokens::default();
        access.put(token("ews", now + time::Duration::hours(1)));
        assert!(access.is_due(&resources, MARGIN, now), "graph missing");
        access.put(token("graph", now + time::Duration::minutes(50)));
        assert!(!access.is_due(&resources, MARGIN, now));
        access.put(token("graph", now + time::Duration::minutes(19)));
        assert!(access.is_due(&resources, MARGIN, now));
    }

    /// A token that lives less than twice the margin is refreshed at half
    /// its life, not on every pass from the moment it is issued.
    #[test]
    fn short_tokens_are_due_at_half_their_life() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let resources = Resource::presets("ews", Cloud::Global).unwrap();
        let mut access = AccessTokens::default();
        let mut short = token("ews", now + time::Duration::minutes(3));
        short.obtained_at = now;
        access.put(short);
        assert_eq!(
            access.due_at(&resources, MARGIN),
            Some(now + time::Duration::seconds(90))
        );
        assert!(!access.is_due(&resources, MARGIN, now + time::Duration::seconds(89)));
        assert!(access.is_due(&resources, MARGIN, now + time::Duration::seconds(90)));
        // Entra's hour-long tokens keep the whole margin.
        let long = token("ews", now + time::Duration::hours(1));
        assert_eq!(long.refresh_margin(MARGIN), MARGIN);
    }

    /// The arithmetic the README states: with the default margin, Secrets
    /// Manager keeps tokens of 40 minutes fresh, and such a token is
    /// refreshed no more often than the day's versions allow; the file
    /// store keeps tokens of 2 minutes fresh.
    #[test]
    fn the_shortest_lifetime_each_store_keeps_fresh() {
        let shortest = shortest_kept_fresh(true, MARGIN);
        assert_eq!(shortest, Duration::from_secs(40 * 60));
        let now = datetime!(2026-11-28 12:00 UTC);
        for lifetime in [shortest, Duration::from_secs(75 * 60)] {
            let mut t = token("ews", now + lifetime);
            t.obtained_at = now;
            let period = lifetime - t.refresh_margin(MARGIN);
            let per_day = 86_400 / period.as_secs();
            assert!(
                per_day as usize <= crate::domain::records::MAX_PRODUCT_VERSIONS_PER_DAY,
                "{lifetime:?}: {per_day} refreshes a day"
            );
            assert!(lifetime / 6 <= period, "at most 6 an hour");
        }
        let mut shorter = token("ews", now + shortest - Duration::from_secs(60));
        shorter.obtained_at = now;
        let period = shorter.lifetime() - shorter.refresh_margin(MARGIN);
        assert!(
            86_400 / period.as_secs() > 72,
            "a minute shorter is too short"
        );
        assert_eq!(shortest_kept_fresh(false, MARGIN), Duration::from_secs(120));
    }

    #[test]
    fn idle_grants_are_kept_alive() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let resources = Resource::presets("ews", Cloud::Global).unwrap();
        let mut access = AccessTokens::default();
        let mut fresh = token("ews", now + time::Duration::hours(1));
        fresh.obtained_at = now - time::Duration::days(7);
        access.put(fresh);
        assert!(access.is_due(&resources, MARGIN, now));
    }

    #[test]
    fn the_newest_token_wins_even_when_it_expires_sooner() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let mut older = token("ews", now + time::Duration::minutes(89));
        older.obtained_at = now - time::Duration::minutes(1);
        let mut newer = token("ews", now + time::Duration::minutes(61));
        newer.obtained_at = now;
        let mut ours = AccessTokens::default();
        ours.put(older.clone());
        let mut theirs = AccessTokens::default();
        theirs.put(newer);
        theirs.put(token("graph", now));
        ours.keep_newest(&theirs);
        assert_eq!(
            ours.get("ews").unwrap().expires_at,
            now + time::Duration::minutes(61),
            "issued later, so it wins although it expires sooner"
        );
        assert!(ours.get("graph").is_some());
        let mut theirs = AccessTokens::default();
        theirs.put(older);
        ours.keep_newest(&theirs);
        assert_eq!(
            ours.get("ews").unwrap().expires_at,
            now + time::Duration::minutes(61),
            "an older token never replaces a newer one"
        );
    }
}
