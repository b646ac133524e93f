//! What a process remembers of the connections its refresh passes found
//! with nothing to do, so that the next passes do not read their serve
//! secret again before its answer can change.
//!
//! Reading every serve secret every 5 minutes was most of a connection's
//! API calls (8,760 a month). A connection that is not due is read again
//! only when one of these comes first:
//! - its serve secret changed: the listing the pass makes anyway carries
//!   each secret's change mark (on Secrets Manager the id of its current
//!   version), and a mark that moved means someone wrote (a consent, a
//!   key, a removal);
//! - the time its answer changes by itself: when its token becomes due, or
//!   its backoff ends;
//! - [`LOOK_AGAIN_WITHIN`] has passed (ListSecrets may lag by minutes).
//!
//! The memory lives as long as the process: a warm Lambda environment of
//! token-refresh keeps it from pass to pass, a cold start reads everything
//! once. Forced passes and passes over one connection never use it.

use crate::domain::{ConnectionId, CredentialKind, Outcome, Status};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;

/// The longest a remembered answer is used without reading the secret.
pub const LOOK_AGAIN_WITHIN: Duration = Duration::from_secs(60 * 60);

/// What a pass found of a connection with nothing to do.
#[derive(Clone, Debug)]
pub struct Answer {
    pub outcome: Outcome,
    pub status: Status,
    pub credential_expires: Option<time::Date>,
    pub credential_kind: CredentialKind,
}

/// An answer, the serve secret's change mark listed before it was read,
/// and until when the answer holds.
struct Entry {
    mark: String,
    look_again_at: OffsetDateTime,
    answer: Answer,
}

#[derive(Default)]
pub struct SurveyMemory {
    entries: Mutex<HashMap<ConnectionId, Entry>>,
}

impl SurveyMemory {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Entry>> {
        // Each statement leaves the map whole: a panic cannot corrupt it.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The remembered answer for `id`, if its serve secret still has
    /// `mark` and the answer still holds at `now`.
    pub fn recall(
        &self,
        id: &ConnectionId,
        mark: Option<&str>,
        now: OffsetDateTime,
    ) -> Option<Answer> {
        let mark = mark?;
        let entries = self.entries();
        let entry = entries.get(id)?;
        (entry.mark == mark && now < entry.look_again_at).then(|| entry.answer.clone())
    }

    /// Remembers an answer read at `now`, to hold until `holds_until` at
    /// the latest (and never longer than [`LOOK_AGAIN_WITHIN`]). Nothing is
    /// remembered without a mark, nor with notifications waiting (their
    /// delivery writes).
    pub fn remember(
        &self,
        id: &ConnectionId,
        mark: Option<String>,
        answer: Answer,
        holds_until: OffsetDateTime,
        now: OffsetDateTime,
    ) {
        match mark {
            Some(mark) if answer.status.outbox.is_empty() => {
                let look_again_at = holds_until.min(now + LOOK_AGAIN_WITHIN);
                let entry = Entry {
                    mark,
                    look_again_at,
                    answer,
                };
                self.entries().insert(id.clone(), entry);
            }
            _ => self.forget(id),
        }
    }

    pub fn forget(&self, id: &ConnectionId) {
        self.entries().remove(id);
    }

    /// Drops every connection no longer listed.
    pub fn keep_only<'a>(&self, listed: impl IntoIterator<Item = &'a ConnectionId>) {
        let listed: std::collections::HashSet<&ConnectionId> = listed.into_iter().collect();
        self.entries().retain(|id, _| listed.contains(id));
    }

    /// The soonest moment a remembered answer stops holding.
    pub fn earliest_look_again(&self) -> Option<OffsetDateTime> {
        self.entries().values().map(|e| e.look_again_at).min()
    }

    /// Forgets everything, as a cold start does.
    pub fn clear(&self) {
        self.entries().clear();
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-08 12:00 UTC);

    fn answer() -> Answer {
        Answer {
            outcome: Outcome::NotDue,
            status: Status::connected("a@contoso.com", NOW),
            credential_expires: None,
            credential_kind: CredentialKind::default(),
        }
    }

    #[test]
    fn an_answer_holds_until_its_time_or_a_change() {
        let memory = SurveyMemory::default();
        let id = ConnectionId::parse("contoso").unwrap();
        let due = NOW + time::Duration::minutes(30);
        memory.remember(&id, Some("m1".into()), answer(), due, NOW);
        assert!(memory.recall(&id, Some("m1"), NOW).is_some());
        assert!(
            memory.recall(&id, Some("m2"), NOW).is_none(),
            "written since"
        );
        assert!(memory.recall(&id, None, NOW).is_none(), "no mark listed");
        assert!(memory.recall(&id, Some("m1"), due).is_none(), "due by then");
    }

    #[test]
    fn no_answer_is_kept_longer_than_the_cap_nor_without_a_mark() {
        let memory = SurveyMemory::default();
        let id = ConnectionId::parse("contoso").unwrap();
        let far = NOW + time::Duration::days(1);
        memory.remember(&id, Some("m1".into()), answer(), far, NOW);
        let cap = NOW + LOOK_AGAIN_WITHIN;
        assert!(
            memory
                .recall(&id, Some("m1"), cap - time::Duration::SECOND)
                .is_some()
        );
        assert!(memory.recall(&id, Some("m1"), cap).is_none());
        let other = ConnectionId::parse("fabrikam").unwrap();
        memory.remember(&other, None, answer(), far, NOW);
        assert_eq!(memory.len(), 1);
        memory.keep_only([&other]);
        assert!(memory.is_empty(), "contoso is no longer listed");
    }
}
