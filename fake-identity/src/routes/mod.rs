//! HTTP handlers, one module per endpoint.

pub(crate) mod admin_consent;
pub(crate) mod authorize;
pub(crate) mod discovery;
pub(crate) mod token;
