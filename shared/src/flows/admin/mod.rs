//! The operator's commands: connections, device keys and consent links.

use crate::Broker;
use crate::broker::BrokerError;
use crate::certificate::CertificateKey;
use crate::domain::app::InvalidApp;
use crate::domain::status::SecretInUse;
use crate::domain::{
    ActiveKey, AppRegistration, CertificateRef, Cloud, ConnectionId, ConnectionState, DeviceKey,
    GrantRecord, Mode, Provider, Resource, Secret, ServeRecord, Status, VendorApp, Writer,
};
use crate::store::{Part, StoreError, Versioned};
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

mod add;
mod connection;
mod keys;
mod links;

pub use add::*;
pub use connection::*;
pub use keys::*;
pub use links::*;

use add::{certificate_ref, future_expiry, tenant_by_id};
use connection::serve_of;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("connection '{0}' already exists: use `roomtoken connection update`")]
    Exists(ConnectionId),
    #[error("connection '{0}' does not exist: see `roomtoken connection list`")]
    NotFound(ConnectionId),
    #[error("connection '{0}' has no active device key '{1}': see `roomtoken key list {0}`")]
    KeyNotFound(ConnectionId, String),
    #[error("a key count must be from 1 to {MAX_KEYS_AT_ONCE}")]
    KeyCount,
    #[error(
        "connection '{0}' was removed and is still being deleted (Secrets Manager takes a while): try `roomtoken connection add` again in a minute"
    )]
    BeingDeleted(ConnectionId),
    #[error(
        "connection '{id}' has no room for {count} more device key(s): its serve secret would be {bytes} bytes, over the {limit} that the operator's changes may fill (a secret holds 65,536 bytes, and the rest is kept for the tokens the refresh pass stores). Nothing was created. Revoke keys no longer in use (`roomtoken key list {id}`), or make keys in fewer, larger batches (`--count`)"
    )]
    KeysDoNotFit {
        id: ConnectionId,
        count: u32,
        bytes: usize,
        limit: usize,
    },
    #[error("a consent link lives at most 30 days: give a shorter --ttl")]
    LinkTtl,
    #[error("the client secret is empty")]
    EmptySecret,
    #[error(
        "the client secret's expiry ({0}) is not in the future: give the date Entra ID shows for the secret"
    )]
    SecretExpiryPast(time::Date),
    #[error("connection '{0}' holds one client secret: there is no previous one to remove")]
    NoPreviousSecret(ConnectionId),
    #[error(
        "connection '{0}' still uses its previous client secret (Entra ID refused the newest): fix the newest with `--client-secret-stdin` before removing the previous one"
    )]
    PreviousSecretInUse(ConnectionId),
    #[error("no vendor app is set: run `roomtoken vendor-app set` first")]
    NoVendorApp,
    #[error(
        "connection '{0}' uses the vendor app: its app, client id and secret are the vendor app's (`roomtoken vendor-app set`); only --resources and --reset-account apply"
    )]
    VendorConnection(ConnectionId),
    #[error(
        "connection '{0}' is self-service and its customer has not filled in the setup form yet: only --resources applies until then"
    )]
    AwaitingSetup(ConnectionId),
    #[error(
        "the vendor app's client id and cloud are fixed once set (connections were added with them): only its secret can be replaced"
    )]
    VendorAppChanged,
    #[error(transparent)]
    Invalid(#[from] InvalidApp),
    #[error(
        "app-only connections are for Entra ID tenants (--tenant): client credentials at another server are not supported"
    )]
    AppOnlyNeedsEntra,
    #[error(
        "an app-only vendor connection needs the customer's tenant (--tenant, its id or a verified domain): Microsoft's admin-consent answer names its tenant only as a hint, so the tenant cannot be learned from it"
    )]
    VendorAppOnlyNeedsTenant,
    #[error(
        "a vendor connection needs the customer's tenant (--tenant, its id or a verified domain): the vendor app is granted in many organizations, and a link without one would connect a user of any of them"
    )]
    VendorNeedsTenant,
    #[error(
        "connection '{0}' is connected: its tenant is the signed-in account's. To move it to another organization, give --reset-account with --tenant (the displays stop until the new consent)"
    )]
    TenantPinned(ConnectionId),
    #[error("an app-only connection has no booking account: nobody signs in")]
    AppOnlyHasNoAccount,
    #[error(
        "the tenant's id could not be found from its domain ({0}): give the tenant id (a GUID) with --tenant"
    )]
    TenantNotResolved(String),
    #[error(
        "the tenant is not in the {0} Microsoft cloud this connection uses (or Microsoft did not say which it is in): check the tenant, and the cloud (--cloud, or the vendor app's)"
    )]
    TenantInOtherCloud(String),
    #[error("a self-service connection cannot be app-only")]
    SelfServiceAppOnly,
    #[error(
        "the certificate expired on {0}: make a new one (--generate-certificate) or give a valid one"
    )]
    CertificateExpired(time::Date),
    #[error(transparent)]
    Certificate(#[from] crate::certificate::CertificateError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
