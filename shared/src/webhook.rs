//! The webhook port (send one signed notification) and its HTTP adapter.

use crate::domain::notify::WebhookSecret;
use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::OnceCell;
use url::Url;

/// Why a delivery did not reach the receiver or was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    #[error("the receiver did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the receiver could not be reached: {0}")]
    Transport(String),
}

/// The webhook port: one notification, signed, to the operator's receiver.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Sends `body` with the Standard Webhooks headers for message `id`,
    /// signed with `secret` at the moment of sending. Only a 2xx answer
    /// counts as delivered.
    async fn send(
        &self,
        url: &Url,
        secret: &WebhookSecret,
        id: &str,
        body: &str,
    ) -> Result<(), DeliveryError>;
}

/// Sends over HTTPS with reqwest: no redirects (a 3xx is not a delivery),
/// a timeout per request, the client built on first use.
pub struct HttpWebhookSender {
    timeout: Duration,
    client: OnceCell<reqwest::Client>,
}

impl HttpWebhookSender {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&reqwest::Client, DeliveryError> {
        self.client
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(self.timeout)
                    .user_agent(concat!("roomtoken/", env!("CARGO_PKG_VERSION")))
                    .build()
            })
            .await
            .map_err(|e| DeliveryError::Transport(e.to_string()))
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(
        &self,
        url: &Url,
        secret: &WebhookSecret,
        id: &str,
        body: &str,
    ) -> Result<(), DeliveryError> {
        // The wall clock, not the broker's: receivers refuse a timestamp
        // more than five minutes from their own time.
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let response = self
            .client()
            .await?
            .post(url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", secret.sign(id, timestamp, body))
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    DeliveryError::Timeout(self.timeout)
                } else {
                    // Without the URL: the error names what failed, not where.
                    DeliveryError::Transport(e.without_url().to_string())
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }
}
