//! The four use cases as plain async functions over a [`crate::Broker`].
//! They know nothing of HTTP or Lambda; `crate::http` maps them to routes.

pub mod admin;
pub mod callback;
mod mint;
pub mod notify;
pub mod read;
pub mod refresh;
pub mod setup;
pub mod start;
pub mod survey_memory;
