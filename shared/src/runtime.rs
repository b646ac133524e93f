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
        let metrics = crate::read_metrics::ReadMetrics::for_function(function_name, every);
        broker = broker.with_read_metrics(metrics);
    }
    Ok(Arc::new(broker))
}

/// token-read's cold start: reads the device-key secret during the init
/// phase rather than on a display's first request. A failure is only
/// logged: the first request that needs the secret tries again.
pub async fn prepare_token_read(broker: &Broker) {
    if let Err(error) = broker.device_key_signer().await {
        tracing::warn!(%error, "the device-key secret could not be read at cold start");
    }
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

/// How text log lines write their fields: as tracing's default does, but
/// with every control character escaped (`\n` as the two characters `\`
/// and `n`). Values from the internet or the identity provider (an
/// `error_description`, an account name) can then never start a forged
/// line of their own. JSON lines escape them anyway.
pub fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use std::fmt::Write;
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        if field.name() != "message" {
            write!(writer, "{field}=")?;
        }
        write!(EscapeControls(writer), "{value:?}")
    })
    .delimited(" ")
}

/// A writer that escapes control characters on their way through.
struct EscapeControls<'a, W: std::fmt::Write>(&'a mut W);

impl<W: std::fmt::Write> std::fmt::Write for EscapeControls<'_, W> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let control = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "{}", control.escape_default())?;
            rest = &rest[at + control.len_utf8()..];
        }
        self.0.write_str(rest)
    }
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
        builder
            .with_ansi(false)
            .without_time()
            .fmt_fields(escaped_fields())
            .try_init()
    };
    if let Err(e) = installed {
        eprintln!("logging was set up twice: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::LevelFilter;

    /// A value with a line break and a terminal escape writes one line, in
    /// which both are escaped.
    #[test]
    fn text_logs_escape_control_characters_in_values() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .fmt_fields(escaped_fields())
            .finish();
        let forged = "declined\nINFO roomtoken: connected account=admin@contoso.com\u{1b}[2K";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(error_description = %forged, account = "a\rb", "refused: {}", "x\ny");
        });
        let printed = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(printed.lines().count(), 1, "{printed}");
        assert!(printed.contains(r"refused: x\ny"), "{printed}");
        assert!(
            printed.contains(r"error_description=declined\nINFO"),
            "{printed}"
        );
        assert!(printed.contains(r"\u{1b}[2K"), "{printed}");
        assert!(printed.contains(r#"account="a\rb""#), "{printed}");
        assert!(!printed.contains('\u{1b}'), "{printed}");
    }

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
