//! What every Lambda function does at cold start: read the environment
//! (store defaults to Secrets Manager) and build the broker once.

use crate::Broker;
use crate::broker::BrokerError;
use crate::config::{Config, ConfigError};
use crate::store::StoreSpec;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

pub async fn broker_from_env() -> Result<Arc<Broker>, StartupError> {
    let config = Config::from_env(StoreSpec::Aws)?;
    Ok(Arc::new(Broker::from_config(config).await?))
}
