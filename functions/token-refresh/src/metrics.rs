//! A refresh pass's metrics in CloudWatch embedded metric format (EMF): log
//! lines from which CloudWatch Logs extracts the metrics that the alarms of
//! `infra/template.yaml` watch. Nothing here talks to CloudWatch.
//!
//! One document per dimension set, in namespace [`NAMESPACE`]:
//! - `FunctionName`: `Connections`, `Refreshed`, `Failed`, `StoreFailed`,
//!   `Deferred`, `WriteQuota`, `NeedsHuman`; and `CredentialDaysLeft` (days
//!   until the earliest known client secret expiry) when one is known;
//! - `FunctionName`, `FailureClass`: `Failed`, for every class;
//! - `FunctionName`, `State`: `Connections`, for every state after the pass;
//! - `FunctionName`: `NotificationsDelivered`, `NotificationsFailed`,
//!   `NotificationsDropped` (given up), `NotificationsWaiting` (in outboxes).
//!
//! Classes and states without connections are sent as 0, so that graphs and
//! alarms see a value every pass rather than missing data.

use crate::PassSummary;
use roomtoken::domain::{ConnectionState, FailureClass};
use serde_json::{Value, json};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};
use strum::IntoEnumIterator;

pub const NAMESPACE: &str = "roomtoken";

/// The EMF documents of one pass, each a JSON object for one log line.
pub fn pass_documents(summary: &PassSummary, function_name: &str, timestamp_ms: i64) -> Vec<Value> {
    let document = |dimensions: &[&str], metrics: &[&str], members: Value| {
        let mut document = json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [dimensions],
                    "Metrics": metrics
                        .iter()
                        .map(|name| json!({"Name": name, "Unit": "Count"}))
                        .collect::<Vec<_>>(),
                }],
            },
            "FunctionName": function_name,
        });
        if let (Some(target), Value::Object(members)) = (document.as_object_mut(), members) {
            target.extend(members);
        }
        document
    };

    let mut documents = vec![document(
        &["FunctionName"],
        &[
            "Connections",
            "Refreshed",
            "Failed",
            "StoreFailed",
            "Deferred",
            "WriteQuota",
            "NeedsHuman",
        ],
        json!({
            "Connections": summary.connections,
            "Refreshed": summary.refreshed,
            "Failed": summary.failed,
            "StoreFailed": summary.store_failed,
            "Deferred": summary.deferred,
            "WriteQuota": summary.write_quota,
            "NeedsHuman": summary.needing_human,
        }),
    )];
    if let Some(days) = summary.credential_days_left {
        // Days are no CloudWatch unit: "None". Missing when no expiry is
        // known, which the alarm treats as not breaching.
        let mut credential = document(
            &["FunctionName"],
            &["CredentialDaysLeft"],
            json!({"CredentialDaysLeft": days}),
        );
        credential["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("None");
        documents.push(credential);
    }
    for class in FailureClass::iter() {
        let failed = summary.failed_by_class.get(<&str>::from(class)).copied();
        documents.push(document(
            &["FunctionName", "FailureClass"],
            &["Failed"],
            json!({"FailureClass": class, "Failed": failed.unwrap_or(0)}),
        ));
    }
    for state in ConnectionState::iter() {
        let connections = summary.states.get(<&str>::from(state)).copied();
        documents.push(document(
            &["FunctionName", "State"],
            &["Connections"],
            json!({"State": state, "Connections": connections.unwrap_or(0)}),
        ));
    }
    let sent = &summary.notifications;
    documents.push(document(
        &["FunctionName"],
        &[
            "NotificationsDelivered",
            "NotificationsFailed",
            "NotificationsDropped",
            "NotificationsWaiting",
        ],
        json!({
            "NotificationsDelivered": sent.delivered,
            "NotificationsFailed": sent.failed,
            "NotificationsDropped": sent.dropped,
            "NotificationsWaiting": sent.waiting,
        }),
    ));
    documents
}

/// The documents as newline-terminated lines.
pub fn pass_lines(summary: &PassSummary, function_name: &str, timestamp_ms: i64) -> String {
    pass_documents(summary, function_name, timestamp_ms)
        .iter()
        .map(|document| format!("{document}\n"))
        .collect()
}

/// Prints the pass's metrics to stdout, which Lambda sends to CloudWatch
/// Logs; the dimension is the running function's name.
pub fn print_pass_metrics(summary: &PassSummary) {
    let function_name =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "token-refresh".into());
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let lines = pass_lines(summary, &function_name, now_ms);
    let mut stdout = std::io::stdout().lock();
    // One write of whole lines; if stdout is gone there is nowhere to report it.
    let _ = stdout
        .write_all(lines.as_bytes())
        .and_then(|()| stdout.flush());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn summary() -> PassSummary {
        PassSummary {
            connections: 5,
            refreshed: 2,
            not_due: 1,
            failed: 2,
            store_failed: 0,
            failed_by_class: BTreeMap::from([("transient", 1), ("reconnect_needed", 1)]),
            states: BTreeMap::from([
                ("connected", 2),
                ("degraded", 1),
                ("reconnect_required", 1),
                ("pending_consent", 1),
            ]),
            needing_human: 2,
            ..PassSummary::default()
        }
    }

    fn directive(dimensions: &[&str], metrics: &[&str]) -> Value {
        json!({
            "Timestamp": 1_764_000_000_000_i64,
            "CloudWatchMetrics": [{
                "Namespace": "roomtoken",
                "Dimensions": [dimensions],
                "Metrics": metrics.iter().map(|m| json!({"Name": m, "Unit": "Count"})).collect::<Vec<_>>(),
            }],
        })
    }

    #[test]
    fn totals_document_has_the_exact_emf_shape() {
        let documents = pass_documents(&summary(), "rt-token-refresh", 1_764_000_000_000);
        assert_eq!(
            documents[0],
            json!({
                "_aws": directive(
                    &["FunctionName"],
                    &["Connections", "Refreshed", "Failed", "StoreFailed", "Deferred", "WriteQuota", "NeedsHuman"]
                ),
                "FunctionName": "rt-token-refresh",
                "Connections": 5,
                "Refreshed": 2,
                "Failed": 2,
                "StoreFailed": 0,
                "Deferred": 0,
                "WriteQuota": 0,
                "NeedsHuman": 2,
            })
        );
    }

    #[test]
    fn the_earliest_credential_expiry_is_a_metric_of_its_own_when_known() {
        let unknown = pass_documents(&summary(), "fn", 7);
        assert!(
            unknown
                .iter()
                .all(|d| d.get("CredentialDaysLeft").is_none())
        );
        let known = PassSummary {
            credential_days_left: Some(-2),
            ..summary()
        };
        let documents = pass_documents(&known, "fn", 7);
        let credential = documents
            .iter()
            .find(|d| d.get("CredentialDaysLeft").is_some())
            .expect("the credential document");
        assert_eq!(credential["CredentialDaysLeft"], -2, "expired two days ago");
        assert_eq!(
            credential["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "CredentialDaysLeft", "Unit": "None"}])
        );
        assert_eq!(
            credential["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName"]])
        );
    }

    #[test]
    fn failures_are_counted_per_class_with_zeros() {
        let documents = pass_documents(&summary(), "rt-token-refresh", 1_764_000_000_000);
        assert_eq!(
            documents[1],
            json!({
                "_aws": directive(&["FunctionName", "FailureClass"], &["Failed"]),
                "FunctionName": "rt-token-refresh",
                "FailureClass": "transient",
                "Failed": 1,
            })
        );
        let per_class: Vec<(String, u64)> = documents[1..6]
            .iter()
            .map(|d| {
                (
                    d["FailureClass"].as_str().unwrap().to_owned(),
                    d["Failed"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            per_class,
            [
                ("transient".to_owned(), 1),
                ("reconnect_needed".to_owned(), 1),
                ("app_misconfigured".to_owned(), 0),
                ("blocked".to_owned(), 0),
                ("our_bug".to_owned(), 0),
            ]
        );
    }

    #[test]
    fn connections_are_counted_per_state_with_zeros() {
        let documents = pass_documents(&summary(), "rt-token-refresh", 1_764_000_000_000);
        assert_eq!(documents.len(), 1 + 5 + 7 + 1);
        assert_eq!(
            documents[6],
            json!({
                "_aws": directive(&["FunctionName", "State"], &["Connections"]),
                "FunctionName": "rt-token-refresh",
                "State": "pending_consent",
                "Connections": 1,
            })
        );
        let per_state: BTreeMap<&str, u64> = documents[6..13]
            .iter()
            .map(|d| {
                (
                    d["State"].as_str().unwrap(),
                    d["Connections"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            per_state,
            BTreeMap::from([
                ("pending_consent", 1),
                ("connected", 2),
                ("degraded", 1),
                ("reconnect_required", 1),
                ("app_misconfigured", 0),
                ("blocked", 0),
                ("tokens_too_short", 0),
            ])
        );
    }

    #[test]
    fn every_document_is_one_line_whose_metrics_are_members() {
        let lines = pass_lines(&summary(), "fn", 7);
        assert!(lines.ends_with('\n'));
        for line in lines.lines() {
            let document: Value = serde_json::from_str(line).unwrap();
            let directive = &document["_aws"]["CloudWatchMetrics"][0];
            for dimension in directive["Dimensions"][0].as_array().unwrap() {
                assert!(document[dimension.as_str().unwrap()].is_string(), "{line}");
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                assert!(
                    document[metric["Name"].as_str().unwrap()].is_i64(),
                    "{line}"
                );
            }
        }
        assert_eq!(lines.lines().count(), 14);
    }

    #[test]
    fn notifications_are_counted_every_pass() {
        let mut summary = summary();
        summary.notifications.delivered = 3;
        summary.notifications.dropped = 1;
        let documents = pass_documents(&summary, "fn", 7);
        let last = documents.last().unwrap();
        assert_eq!(last["NotificationsDelivered"], 3);
        assert_eq!(last["NotificationsDropped"], 1);
        assert_eq!(last["NotificationsFailed"], 0);
    }
}
