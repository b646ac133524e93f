//! The use cases as plain async functions over a [`crate::Broker`]: the
//! consent's start and callback (and the self-service form), a display's
//! read, the refresh pass (with its survey memory, token minting and
//! notifications), and the operator's commands. They know nothing of HTTP
//! or Lambda; `crate::http` maps them to routes.

pub mod admin;
pub mod callback;
mod mint;
pub mod read;
pub mod refresh;
pub mod start;
