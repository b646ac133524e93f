//! AWS Secrets Manager adapter.
//!
//! `PutSecretValue` has no compare-and-swap, so a write stages the new
//! version as `AWSPENDING` and then moves `AWSCURRENT` onto it with
//! `UpdateSecretVersionStage(RemoveFromVersionId = the version read)`, which
//! fails when someone else moved `AWSCURRENT` first. Reads always ask for
//! `AWSCURRENT`.

use super::{SecretStore, StoreError, StoreResult, Stored, Version};
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

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

    /// The version id that is AWSCURRENT now, if it can be read (with the
    /// GetSecretValue every writer may already call).
    async fn current_version(&self, full_name: &str) -> Option<String> {
        self.client
            .get_secret_value()
            .secret_id(full_name)
            .version_stage(CURRENT)
            .send()
            .await
            .ok()?
            .version_id
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
    match code {
        "AccessDeniedException"
        | "AccessDenied"
        | "KMSAccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException" => StoreError::Denied {
            name: name.to_owned(),
            reason: detail,
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
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
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
                if self.current_version(&full_name).await.as_deref() == Some(&new_version) {
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
        let mut names = Vec::new();
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
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// CreateSecret; or PutSecretValue then UpdateSecretVersionStage.
    fn calls_per_write(&self, creating: bool) -> u32 {
        if creating { 1 } else { 2 }
    }
}
