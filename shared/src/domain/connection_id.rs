use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A connection id: 1 to 64 characters of `a-z`, `0-9` and `-`.
///
/// Every entry point parses ids through this type, which also keeps the file
/// store inside its directory (no `/`, `.` or `..` can get through).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectionId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a connection id is 1 to 64 characters of a-z, 0-9 and '-'")]
pub struct InvalidConnectionId;

impl ConnectionId {
    pub fn parse(value: &str) -> Result<Self, InvalidConnectionId> {
        if Self::is_valid(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidConnectionId)
        }
    }

    /// Whether `value` is a connection id, without making one.
    pub fn is_valid(value: &str) -> bool {
        (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ConnectionId {
    type Err = InvalidConnectionId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ConnectionId {
    type Error = InvalidConnectionId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ConnectionId> for String {
    fn from(id: ConnectionId) -> Self {
        id.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(ConnectionId::parse("contoso-hq-2").is_ok());
        assert!(ConnectionId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "Contoso",
            "a/b",
            "..",
            "a.b",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert_eq!(
                ConnectionId::parse(bad),
                Err(InvalidConnectionId),
                "{bad:?}"
            );
        }
    }
}
