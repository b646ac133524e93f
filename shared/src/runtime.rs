//! What every Lambda function does at cold start: set up logging, read the
//! environment (store defaults to Secrets Manager) and build the broker once.

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
    let every = config.read_metrics_every;
    let mut broker = Broker::from_config(config).await?;
    if let Ok(function_name) = std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
        let metrics = crate::http::read_metrics::ReadMetrics::for_function(function_name, every);
        broker = broker.with_read_metrics(metrics);
    }
    Ok(Arc::new(broker))
}

/// Libraries whose debug and trace lines carry what must never be logged:
/// the Lambda runtime logs each raw event (device keys, codes, cookies),
/// the AWS SDK request bodies (refresh tokens, client secrets) and signing
/// material. They stay at `info` whatever the function's log level.
const PINNED_TO_INFO: [&str; 14] = [
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_sdk_secretsmanager",
    "hyper",
    "hyper_util",
    "h2",
];

/// The filter for a function's log level (`AWS_LAMBDA_LOG_LEVEL`, which the
/// template's LogLevel sets, else `RUST_LOG`, else `INFO`): the level for
/// the broker's own lines, `info` at most for the libraries above.
pub fn log_filter(level: Option<&str>) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let level = match level.map(str::trim) {
        // Lambda's FATAL has no tracing level: the nearest is ERROR.
        Some(level) if level.eq_ignore_ascii_case("fatal") => LevelFilter::ERROR,
        Some(level) => level.parse().unwrap_or(LevelFilter::INFO),
        None => LevelFilter::INFO,
    };
    PINNED_TO_INFO.iter().fold(
        EnvFilter::builder()
            .with_default_directive(level.into())
            .parse_lossy(""),
        |filter, target| {
            let quiet = level.min(LevelFilter::INFO);
            match format!("{target}={quiet}").parse() {
                Ok(directive) => filter.add_directive(directive),
                Err(_) => filter,
            }
        },
    )
}

/// Logging as Lambda expects it (JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`),
/// to stdout, with [`log_filter`].
pub fn init_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter(level.as_deref()))
        .with_target(true);
    let installed = if json {
        builder
            .json()
            // The request span: an audit line's request id and source IP.
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .try_init()
    } else {
        builder.with_ansi(false).without_time().try_init()
    };
    if let Err(e) = installed {
        eprintln!("logging was set up twice: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn the_noisy_libraries_stay_at_info_whatever_the_level() {
        let trace = log_filter(Some("TRACE")).to_string();
        assert!(trace.contains("lambda_runtime=info"), "{trace}");
        assert!(trace.contains("aws_smithy_runtime=info"), "{trace}");
        assert!(trace.contains("hyper=info"), "{trace}");
        assert_eq!(
            log_filter(Some("TRACE")).max_level_hint(),
            Some(LevelFilter::TRACE)
        );
        let quiet = log_filter(Some("WARN")).to_string();
        assert!(
            quiet.contains("lambda_runtime=warn"),
            "never louder than asked: {quiet}"
        );
        assert_eq!(
            log_filter(Some("FATAL")).max_level_hint(),
            Some(LevelFilter::ERROR)
        );
        assert_eq!(log_filter(None).max_level_hint(), Some(LevelFilter::INFO));
    }
}
