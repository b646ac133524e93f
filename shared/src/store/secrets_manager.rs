//! AWS Secrets Manager adapter.
//!
//! `PutSecretValue` has no compare-and-swap, so a write stages the new
//! version as `AWSPENDING` and then moves `AWSCURRENT` onto it with
//! `UpdateSecretVersionStage(RemoveFromVersionId = the version read)`, which
//! fails when someone else moved `AWSCURRENT` first. Reads always ask for
//! `AWSCURRENT`.

use super::{Listed, SecretStore, StoreError, StoreResult, Stored, Version};
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::interceptors::InterceptorContext;
use aws_sdk_secretsmanager::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use std::time::Duration;

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

/// One attempt of a Secrets Manager call (usually under 100 ms): a store
/// that hangs is given up on, so that token-read serves what it read last
/// and answers well within API Gateway's 10 s.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole call, the SDK's retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// When a write refused for the version quota may be tried again (the
/// quota frees as versions pass 24 hours; a later pass tries again).
const QUOTA_RETRY_AFTER: time::Duration = time::Duration::hours(1);

/// The SDK's standard retries count `LimitExceededException` as throttling
/// and try it twice more; for Secrets Manager it means the version quota (or
/// the account's secret quota), which a retry within seconds cannot free.
#[derive(Debug)]
struct QuotaIsNotThrottling;

impl ClassifyRetry for QuotaIsNotThrottling {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(response) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        let named = |text: &[u8]| {
            text.windows(QUOTA_ERROR.len())
                .any(|window| window == QUOTA_ERROR.as_bytes())
        };
        let in_header = response
            .headers()
            .get("x-amzn-errortype")
            .is_some_and(|value| named(value.as_bytes()));
        let in_body = response.body().bytes().is_some_and(named);
        if response.status().as_u16() == 400 && (in_header || in_body) {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "the version quota is not throttling"
    }
}

const QUOTA_ERROR: &str = "LimitExceededException";

/// Whether Secrets Manager answered that the secret is being deleted
/// (`InvalidRequestException`: "marked for deletion", "scheduled for
/// deletion"): a secret on its way out, as a removed connection's are for a
/// while, and which ListSecrets may still list.
fn being_deleted<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    error.as_service_error().is_some_and(|e| {
        e.code() == Some("InvalidRequestException")
            && e.message()
                .is_some_and(|m| m.contains("deletion") || m.contains("deleted"))
    })
}

/// The Secrets Manager client every entry point uses: the shared AWS
/// configuration (region, credentials, endpoint, retries) with timeouts on
/// each attempt and each call, and no retry of the version quota.
pub fn client(shared: &aws_config::SdkConfig) -> Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(ATTEMPT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let config = aws_sdk_secretsmanager::config::Builder::from(shared)
        .timeout_config(timeouts)
        .retry_classifier(QuotaIsNotThrottling)
        .build();
    Client::from_conf(config)
}

#[derive(Clone, Debug)]
pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
    kms_key_id: Option<String>,
}

impl SecretsManagerStore {
    /// `prefix` is prepended to every logical name (`roomtoken/` by default).
    pub fn new(client: Client, prefix: &str) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
            kms_key_id: None,
        }
    }

    /// Encrypt new secrets with this customer-managed KMS key.
    pub fn with_kms_key(mut self, kms_key_id: Option<String>) -> Self {
        self.kms_key_id = kms_key_id;
        self
    }

    fn full_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether the version `version_id` is AWSCURRENT, asked of that
    /// version itself (with the GetSecretValue every writer may already
    /// call): Secrets Manager is eventually consistent, and a read of
    /// AWSCURRENT may still return the version before it.
    async fn is_current(&self, full_name: &str, version_id: &str) -> bool {
        self.client
            .get_secret_value()
            .secret_id(full_name)
            .version_id(version_id)
            .send()
            .await
            .ok()
            .is_some_and(|read| read.version_stages().iter().any(|s| s == CURRENT))
    }
}

/// Maps an SDK failure: access problems are `Denied`, the rest `Unavailable`.
fn failure<E, R>(name: &str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error
        .as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("");
    let detail = DisplayErrorContext(&error).to_string();
    // No request was sent: the credential chain found nothing usable (an
    // SSO session that expired, a `credential_process` that failed).
    if matches!(error, SdkError::DispatchFailure(_)) && detail.contains("credentials") {
        return StoreError::NoCredentials(detail);
    }
    match code {
        "AccessDeniedException"
        | "AccessDenied"
        | "KMSAccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException" => StoreError::Denied {
            name: name.to_owned(),
            reason: detail,
        },
        // The version quota (about 100 versions per secret in 24 hours)
        // that the write logs should have kept us within: the write_quota
        // outcome, not an outage.
        QUOTA_ERROR => StoreError::WriteQuota {
            name: name.to_owned(),
            retry_at: time::OffsetDateTime::now_utc() + QUOTA_RETRY_AFTER,
        },
        _ => StoreError::Unavailable(format!("Secrets Manager, {name}: {detail}")),
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    fn losing_write_makes_version(&self) -> bool {
        true
    }

    async fn get(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        let result = self
            .client
            .get_secret_value()
            .secret_id(self.full_name(name))
            .version_stage(CURRENT)
            .send()
            .await;
        match result {
            Ok(output) => {
                let (Some(value), Some(version)) = (output.secret_string, output.version_id) else {
                    return Err(StoreError::Corrupt {
                        name: name.to_owned(),
                        reason: "the secret has no string value or version".into(),
                    });
                };
                Ok(Some(Stored {
                    value,
                    version: Version(version),
                }))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            // On its way out: already gone for every reader.
            Err(e) if being_deleted(&e) => Ok(None),
            Err(e) => Err(failure(name, e)),
        }
    }

    async fn put(&self, name: &str, value: &str, prior: Option<&Version>) -> StoreResult<Version> {
        // Secrets Manager would refuse it too; moto would not.
        super::check_value_size(name, value)?;
        let full_name = self.full_name(name);
        let new_version = uuid::Uuid::new_v4().to_string();
        let Some(prior) = prior else {
            let created = self
                .client
                .create_secret()
                .name(&full_name)
                .client_request_token(&new_version)
                .secret_string(value)
                .set_kms_key_id(self.kms_key_id.clone())
                .description("roomtoken: managed by the broker, do not edit by hand")
                .send()
                .await;
            return match created {
                Ok(_) => Ok(Version(new_version)),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_exists_exception()) =>
                {
                    Err(StoreError::Conflict(name.to_owned()))
                }
                Err(e) if being_deleted(&e) => Err(StoreError::BeingDeleted {
                    name: name.to_owned(),
                }),
                Err(e) => Err(failure(name, e)),
            };
        };
        let staged = self
            .client
            .put_secret_value()
            .secret_id(&full_name)
            .client_request_token(&new_version)
            .secret_string(value)
            .version_stages(PENDING)
            .send()
            .await;
        match staged {
            Ok(_) => {}
            // Removed meanwhile: the write finds nothing to replace.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                    || being_deleted(&e) =>
            {
                return Err(StoreError::Conflict(name.to_owned()));
            }
            Err(e) => return Err(failure(name, e)),
        }
        let moved = self
            .client
            .update_secret_version_stage()
            .secret_id(&full_name)
            .version_stage(CURRENT)
            .move_to_version_id(&new_version)
            .remove_from_version_id(&prior.0)
            .send()
            .await;
        match moved {
            Ok(_) => Ok(Version(new_version)),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_invalid_parameter_exception() || s.is_resource_not_found_exception()
                }) =>
            {
                // The SDK retries a call whose answer was lost; the retry of
                // a move that happened finds the prior version no longer
                // current. Ours being current is that success.
                if self.is_current(&full_name, &new_version).await {
                    return Ok(Version(new_version));
                }
                Err(StoreError::Conflict(name.to_owned()))
            }
            Err(e) => Err(failure(name, e)),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_secret()
            .secret_id(self.full_name(name))
            // Without this, re-adding a removed connection would fail for the
            // recovery window (7 to 30 days).
            .force_delete_without_recovery(true)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(failure(name, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let listed = self.list_marked(prefix).await?;
        Ok(listed.into_iter().map(|l| l.name).collect())
    }

    /// ListSecrets, whose entries carry each secret's current version id
    /// (`SecretVersionsToStages`) at no extra call.
    async fn list_marked(&self, prefix: &str) -> StoreResult<Vec<Listed>> {
        let full_prefix = self.full_name(prefix);
        let mut pages = self
            .client
            .list_secrets()
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(&full_prefix)
                    .build(),
            )
            .max_results(100)
            .into_paginator()
            .send();
        let mut listed = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failure(prefix, e))?;
            for secret in page.secret_list.unwrap_or_default() {
                // Secrets scheduled for deletion are listed but cannot be read.
                if secret.deleted_date.is_some() {
                    continue;
                }
                if let Some(name) = secret
                    .name
                    .as_deref()
                    .and_then(|n| n.strip_prefix(&self.prefix))
                    && name.starts_with(prefix)
                {
                    // The version labelled AWSCURRENT names the value a
                    // read would return; `LastChangedDate` if none is listed.
                    let current = secret.secret_versions_to_stages.as_ref().and_then(|v| {
                        v.iter()
                            .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
                            .map(|(id, _)| id.clone())
                    });
                    let changed = current.or_else(|| {
                        secret
                            .last_changed_date
                            .map(|at| format!("{}.{:09}", at.secs(), at.subsec_nanos()))
                    });
                    listed.push(Listed {
                        name: name.to_owned(),
                        changed,
                    });
                }
            }
        }
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed)
    }

    /// CreateSecret; or PutSecretValue then UpdateSecretVersionStage.
    fn calls_per_write(&self, creating: bool) -> u32 {
        if creating { 1 } else { 2 }
    }
}
