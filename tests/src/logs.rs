//! The log capture that proves no secret is ever logged.

use super::*;

/// Every log line of this test process, at debug level and above.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once per test process.
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedWriter(buffer.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                // Everything at debug, but the AWS SDK's per-request chatter.
                "debug,roomtoken=trace,aws_smithy_runtime=info,aws_smithy_runtime_api=info,aws_sdk_secretsmanager=info,aws_config=info,hyper_util=info",
            ))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        buffer
    });
}

/// How many bytes of log lines this test process captured so far: memory
/// the harness holds, not the broker.
pub fn captured_log_bytes() -> usize {
    LOGS.get()
        .map(|buffer| buffer.lock().expect("log buffer").len())
        .unwrap_or_default()
}

pub fn captured_logs() -> String {
    let buffer = LOGS.get().expect("capture_logs was called");
    String::from_utf8_lossy(&buffer.lock().expect("log buffer")).into_owned()
}

/// Fails, naming the secret by its place in `secrets` (never by any of its
/// characters), when one is found in the logs.
pub fn assert_no_secret_logged(secrets: &[String]) {
    let logs = captured_logs();
    assert!(
        !logs.is_empty(),
        "the log capture saw nothing: it is not wired"
    );
    assert_no_secret_in(&logs, "the logs", secrets);
}

/// The same for any `text`, which `place` names in the failure. A secret
/// shorter than 8 characters counts only as a whole word (it would match
/// inside other words by chance).
pub fn assert_no_secret_in(text: &str, place: &str, secrets: &[String]) {
    let (short, long): (Vec<&str>, Vec<&str>) = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .partition(|s| s.len() < 8);
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
    for (n, secret) in short.iter().enumerate() {
        let whole = text.match_indices(secret).any(|(at, _)| {
            !word(text[..at].chars().next_back()) && !word(text[at + secret.len()..].chars().next())
        });
        assert!(
            !whole,
            "short secret #{n} ({} chars) appears as a word in {place}",
            secret.len()
        );
    }
    // One pass over the text for every secret at once: a long test logs
    // hundreds of megabytes and issues tens of thousands of secrets.
    let checked = long;
    let matcher = aho_corasick::AhoCorasick::new(&checked).expect("secret matcher");
    if let Some(found) = matcher.find(text) {
        // Which one and how long, never any of its characters.
        let n = found.pattern().as_usize();
        panic!(
            "secret #{n} of those given ({} chars) appears in {place}",
            checked[n].len()
        );
    }
}

#[cfg(test)]
mod log_capture_tests {
    use super::*;

    #[test]
    #[should_panic(expected = "appears in the logs")]
    fn a_logged_secret_is_caught() {
        capture_logs();
        tracing::warn!(value = "fake-rt-this-must-never-be-logged", "oops");
        assert_no_secret_logged(&["fake-rt-this-must-never-be-logged".to_owned()]);
    }
}
