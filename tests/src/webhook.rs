//! The webhook receiver that the test script starts
//! (`tests/webhook_receiver.py`): every delivery is verified there by the
//! published `standardwebhooks` package, not by roomtoken's code. Each test
//! takes a channel of its own.

use roomtoken::domain::notify::WebhookSecret;
use serde::Deserialize;
use url::Url;

/// One test's endpoint on the receiver, and the secret it verifies with.
pub struct Channel {
    base: Url,
    name: String,
    pub secret: String,
}

/// What the receiver recorded of one delivery.
#[derive(Clone, Debug, Deserialize)]
pub struct Delivery {
    /// `webhook-id`.
    pub id: Option<String>,
    /// The standard library verified the signature and timestamp.
    pub verified: bool,
    pub error: Option<String>,
    /// What the receiver answered (or would have: a hanging one never does).
    pub status: u16,
    pub payload: Option<serde_json::Value>,
    pub body: String,
}

impl Delivery {
    /// The notification's `type`, once verified.
    pub fn kind(&self) -> &str {
        self.payload
            .as_ref()
            .and_then(|p| p["type"].as_str())
            .unwrap_or("(not verified)")
    }
}

/// How the channel answers deliveries.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// 204.
    Accept,
    /// 500.
    Fail,
    /// Never answers, until the mode changes.
    Hang,
}

/// A new channel that accepts deliveries, with a new secret.
pub async fn channel(prefix: &str) -> Channel {
    let base = std::env::var("ROOMTOKEN_TEST_WEBHOOK_RECEIVER").expect(
        "ROOMTOKEN_TEST_WEBHOOK_RECEIVER is not set: run the suite with scripts/test.sh, which starts the receiver",
    );
    let channel = Channel {
        base: base.parse().expect("receiver URL"),
        name: crate::unique_id(prefix),
        secret: WebhookSecret::generate().expose(),
    };
    channel.configure(Mode::Accept, true).await;
    channel
}

impl Channel {
    /// The URL roomtoken sends to.
    pub fn url(&self) -> Url {
        self.base
            .join(&format!("hooks/{}", self.name))
            .expect("hook URL")
    }

    pub async fn set_mode(&self, mode: Mode) {
        self.configure(mode, false).await;
    }

    async fn configure(&self, mode: Mode, with_secret: bool) {
        let mode = match mode {
            Mode::Accept => "ok",
            Mode::Fail => "fail",
            Mode::Hang => "hang",
        };
        let mut body = serde_json::json!({ "mode": mode });
        if with_secret {
            body["secret"] = self.secret.clone().into();
        }
        let url = self
            .base
            .join(&format!("channels/{}", self.name))
            .expect("channel URL");
        let response = crate::http()
            .put(url)
            .json(&body)
            .send()
            .await
            .expect("the webhook receiver answers");
        assert_eq!(response.status(), 204, "channel configured");
    }

    /// Every delivery received so far, in order.
    pub async fn deliveries(&self) -> Vec<Delivery> {
        let url = self
            .base
            .join(&format!("channels/{}/deliveries", self.name))
            .expect("deliveries URL");
        crate::http()
            .get(url)
            .send()
            .await
            .expect("the webhook receiver answers")
            .json()
            .await
            .expect("deliveries as JSON")
    }

    /// The deliveries once there are at least `count` (a readiness poll,
    /// bounded to 30 s, for a delivery still in flight).
    pub async fn await_deliveries(&self, count: usize) -> Vec<Delivery> {
        for _ in 0..600 {
            let deliveries = self.deliveries().await;
            if deliveries.len() >= count {
                return deliveries;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the receiver did not get {count} deliveries within 30 s");
    }
}
