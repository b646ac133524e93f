//! roomtoken: keeps Microsoft 365 access tokens fresh for meeting-room displays.
//!
//! The crate is laid out as ports and adapters:
//! - [`domain`]: connections, grants, tokens, status and failure classes; no I/O.
//! - [`identity`]: the identity-provider port and its OAuth 2.0 / Entra ID adapter.
//! - [`store`]: the secret-store port with the file and Secrets Manager adapters.
//! - [`flows`]: the four use cases (connect start, callback, refresh pass, token read).
//! - [`http`]: the axum routes that the Lambda functions and `roomtoken serve` share.
//! - [`webhook`]: the port that sends the operator's notifications, and its HTTP adapter.

pub mod broker;
pub mod cache;
pub mod certificate;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod flows;
pub mod http;
pub mod identity;
pub mod pacer;
pub mod runtime;
pub mod snapshot;
pub mod store;
pub mod webhook;

#[cfg(test)]
mod properties;

pub use broker::Broker;
pub use config::Config;
