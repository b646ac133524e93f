//! Domain types: what a connection is, what is stored for it, and the rules that
//! decide when to refresh and how to classify failures. Nothing here does I/O.

pub mod access;
pub mod app;
pub mod claims;
pub mod connection_id;
pub mod device_key;
pub mod failure;
pub mod grant;
pub mod notify;
pub mod outcome;
pub mod records;
pub mod retry;
pub mod secret;
pub mod status;

pub use access::{AccessToken, AccessTokens};
pub use app::{
    AppRegistration, AppSetup, CertificateRef, Cloud, CredentialKind, Mode, Provider, Resource,
    VendorApp,
};
pub use connection_id::ConnectionId;
pub use device_key::{
    ActiveKey, DeviceKey, DeviceKeyRecord, DeviceKeySigner, DeviceKeys, KeyCheck, PresentedKey,
};
pub use failure::FailureClass;
pub use grant::{Account, AccountKey, Grant};
pub use outcome::Outcome;
pub use records::{GrantRecord, ServeRecord, WriteLog, Writer};
pub use secret::Secret;
pub use status::{ConnectionState, LastError, Status};
