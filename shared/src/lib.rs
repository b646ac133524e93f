//! roomtoken: keeps Microsoft 365 access tokens fresh for meeting-room displays.
//!
//! The crate is laid out in layers, each using only those below it (see
//! ARCHITECTURE.md at the repository's root):
//! - [`http`]: the axum routes and pages that the Lambda functions and
//!   `roomtoken serve` share;
//! - [`flows`]: the use cases as async functions over a [`Broker`];
//! - the ports and their adapters: [`store`] (file store, Secrets Manager),
//!   [`identity`] (OAuth 2.0 / Entra ID), [`webhook`] (the operator's
//!   notifications), [`clock`] (time and waiting, so tests can drive them);
//! - [`domain`]: connections, grants, tokens, status and failure classes; no I/O.
//!
//! Beside them: [`broker`] (what every flow takes: configuration, ports,
//! clock, token-read's cache, derived keys), [`config`] (environment and
//! defaults), [`runtime`] (what every binary does at start), [`cache`] (a TTL
//! cache with single-flight loads), [`snapshot`] (what token-read keeps of a
//! connection), [`survey_memory`] (what refresh passes found with nothing
//! to do), [`pacer`] (a refresh pass's write budget), [`crypto`]
//! (signed invites, sealed cookies, derived keys) and [`certificate`] (app
//! certificates and client assertions).

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
pub mod read_metrics;
pub mod runtime;
pub mod snapshot;
pub mod store;
pub mod survey_memory;
pub mod webhook;

#[cfg(test)]
mod properties;

pub use broker::Broker;
pub use config::Config;
