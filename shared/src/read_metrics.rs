//! token-read's metrics in CloudWatch embedded metric format (EMF): reads
//! per outcome, and the 503s per state of their connection.
//!
//! A display fleet reads thousands of times a minute, so the counts are kept
//! in memory and printed at most once per interval (a minute), after the
//! read that ends it: one log line per read would cost more than the reads.
//! Counts of a process that stops before its interval ends are lost (at most
//! a minute of one process's reads). Only under Lambda: `roomtoken serve`
//! keeps none.
//!
//! The documents, in namespace `roomtoken`:
//! - `FunctionName`: `Reads`, `Served`, `NotModified`, `Unauthorized`,
//!   `Unavailable` (503), `BadRequest` (an unknown resource), `StoreErrors`;
//! - `FunctionName`, `State`: `Unavailable`, for each state that had 503s.

use crate::domain::ConnectionState;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How a read was answered, as the metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Served,
    NotModified,
    Unauthorized,
    /// 503: no token with enough time left; the state says why.
    Unavailable(ConnectionState),
    /// 400: an unknown resource or a bad `min_validity`.
    BadRequest,
    StoreError,
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    counts: BTreeMap<&'static str, u64>,
    unavailable: BTreeMap<&'static str, u64>,
}

/// The counts of one process, and where and how often they are printed.
#[derive(Debug, Default)]
pub struct ReadMetrics {
    /// The `FunctionName` dimension; `None`: nothing is counted.
    function_name: Option<String>,
    every: Duration,
    window: Mutex<Window>,
}

const METRICS: [&str; 7] = [
    "Reads",
    "Served",
    "NotModified",
    "Unauthorized",
    "Unavailable",
    "BadRequest",
    "StoreErrors",
];

impl ReadMetrics {
    /// Counts for the Lambda function `function_name`, printed every `every`.
    pub fn for_function(function_name: impl Into<String>, every: Duration) -> Self {
        Self {
            function_name: Some(function_name.into()),
            every,
            window: Mutex::default(),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        // Counters are consistent after every statement.
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn record(&self, outcome: ReadOutcome, now: Instant) {
        if self.function_name.is_none() {
            return;
        }
        let mut window = self.window();
        window.started.get_or_insert(now);
        let name = match outcome {
            ReadOutcome::Served => "Served",
            ReadOutcome::NotModified => "NotModified",
            ReadOutcome::Unauthorized => "Unauthorized",
            ReadOutcome::Unavailable(state) => {
                *window.unavailable.entry(state.into()).or_default() += 1;
                "Unavailable"
            }
            ReadOutcome::BadRequest => "BadRequest",
            ReadOutcome::StoreError => "StoreErrors",
        };
        *window.counts.entry(name).or_default() += 1;
        *window.counts.entry("Reads").or_default() += 1;
    }

    /// The documents of the window when its interval has passed at `now`,
    /// starting a new window; `None` otherwise.
    pub fn take_due(&self, now: Instant, timestamp_ms: i64) -> Option<Vec<Value>> {
        let function_name = self.function_name.as_deref()?;
        let mut window = self.window();
        let started = window.started?;
        if now.duration_since(started) < self.every {
            return None;
        }
        let taken = std::mem::take(&mut *window);
        drop(window);
        Some(documents(&taken, function_name, timestamp_ms))
    }

    /// Prints the window's documents to stdout when it is due.
    pub fn print_due(&self) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let Some(documents) = self.take_due(Instant::now(), now_ms) else {
            return;
        };
        let lines: String = documents.iter().map(|d| format!("{d}\n")).collect();
        let mut stdout = std::io::stdout().lock();
        // If stdout is gone there is nowhere to report it.
        let _ = stdout
            .write_all(lines.as_bytes())
            .and_then(|()| stdout.flush());
    }
}

fn documents(window: &Window, function_name: &str, timestamp_ms: i64) -> Vec<Value> {
    let directive = |dimensions: &[&str], metrics: &[&str]| {
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "roomtoken",
                "Dimensions": [dimensions],
                "Metrics": metrics.iter().map(|m| json!({"Name": m, "Unit": "Count"})).collect::<Vec<_>>(),
            }],
        })
    };
    let mut totals = json!({
        "_aws": directive(&["FunctionName"], &METRICS),
        "FunctionName": function_name,
    });
    for metric in METRICS {
        totals[metric] = window.counts.get(metric).copied().unwrap_or(0).into();
    }
    let mut documents = vec![totals];
    for (state, count) in &window.unavailable {
        documents.push(json!({
            "_aws": directive(&["FunctionName", "State"], &["Unavailable"]),
            "FunctionName": function_name,
            "State": state,
            "Unavailable": count,
        }));
    }
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_printed_once_a_minute_then_start_over() {
        let metrics = ReadMetrics::for_function("rt-token-read", Duration::from_secs(60));
        let start = Instant::now();
        metrics.record(ReadOutcome::Served, start);
        metrics.record(ReadOutcome::NotModified, start);
        metrics.record(ReadOutcome::Unauthorized, start);
        let reconnect = ReadOutcome::Unavailable(ConnectionState::ReconnectRequired);
        metrics.record(reconnect, start);
        metrics.record(reconnect, start);
        let half = start + Duration::from_secs(30);
        assert!(metrics.take_due(half, 7).is_none(), "not a minute yet");
        let minute = start + Duration::from_secs(60);
        let documents = metrics.take_due(minute, 7).expect("due");
        assert_eq!(
            documents[0],
            json!({
                "_aws": {
                    "Timestamp": 7,
                    "CloudWatchMetrics": [{
                        "Namespace": "roomtoken",
                        "Dimensions": [["FunctionName"]],
                        "Metrics": METRICS.iter().map(|m| json!({"Name": m, "Unit": "Count"})).collect::<Vec<_>>(),
                    }],
                },
                "FunctionName": "rt-token-read",
                "Reads": 5, "Served": 1, "NotModified": 1, "Unauthorized": 1,
                "Unavailable": 2, "BadRequest": 0, "StoreErrors": 0,
            })
        );
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1]["State"], "reconnect_required");
        assert_eq!(documents[1]["Unavailable"], 2);
        assert!(
            metrics
                .take_due(minute + Duration::from_secs(120), 8)
                .is_none(),
            "an empty window prints nothing"
        );
    }

    #[test]
    fn outside_lambda_nothing_is_counted() {
        let metrics = ReadMetrics::default();
        let now = Instant::now();
        metrics.record(ReadOutcome::Served, now);
        assert!(
            metrics
                .take_due(now + Duration::from_secs(3600), 1)
                .is_none()
        );
    }
}
