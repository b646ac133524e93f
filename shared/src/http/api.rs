//! The display-facing JSON API, as described by `shared/openapi.json`.

use super::audit::{self, RequestOrigin};
use crate::Broker;
use crate::flows::read::{ReadError, TokenReply, TokenRequest, read_status, read_token};
use crate::read_metrics::ReadOutcome;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::TypedHeader;
use axum_extra::headers::authorization::{Authorization, Bearer};
use axum_extra::headers::{ETag, Header, IfNoneMatch};
use axum_extra::typed_header::TypedHeaderRejection;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The OpenAPI 3.1 document of the display-facing routes.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

#[derive(Deserialize)]
pub struct TokenQuery {
    resource: Option<String>,
    min_validity: Option<String>,
}

/// The 200 body of the token route (README, *Token reads for display fleets*).
#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    token_type: &'a str,
    expires_at: &'a str,
    expires_in: u64,
    scope: &'a str,
    resource: &'a str,
    account: &'a str,
}

/// `Authorization: Bearer <device key>`. A header that is not a bearer
/// credential is answered as a missing key: the same 401 as any other.
type BearerKey = Result<TypedHeader<Authorization<Bearer>>, TypedHeaderRejection>;

fn presented(key: &BearerKey) -> Option<&str> {
    key.as_ref()
        .ok()
        .map(|TypedHeader(auth)| auth.token().trim())
}

/// The entity tag of a token: its fingerprint, quoted (a strong validator).
fn entity_tag(fingerprint: &str) -> Option<ETag> {
    format!("\"{fingerprint}\"").parse().ok()
}

/// Whether the display already has the token (RFC 9110 13.1.2: a list of
/// tags or `*`, compared weakly; an unreadable header matches nothing).
fn not_modified(if_none_match: Option<&IfNoneMatch>, etag: &ETag) -> bool {
    if_none_match.is_some_and(|header| !header.precondition_passes(etag))
}

/// The `If-None-Match` of a request, when every tag in it is made of the
/// characters RFC 9110 allows (`etagc`). The `headers` crate compares tags
/// lazily and asserts that (a debug build panics on `" "`), so anything
/// else is treated as no header at all.
fn readable_if_none_match(headers: &HeaderMap) -> Option<IfNoneMatch> {
    let values: Vec<&HeaderValue> = headers.get_all(header::IF_NONE_MATCH).iter().collect();
    let valid_tags = values.iter().all(|value| {
        let mut quoted = false;
        value.as_bytes().iter().all(|&byte| match (quoted, byte) {
            (_, b'"') => {
                quoted = !quoted;
                true
            }
            (true, c) => c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80,
            (false, _) => true,
        })
    });
    if values.is_empty() || !valid_tags {
        return None;
    }
    IfNoneMatch::decode(&mut values.into_iter()).ok()
}

/// The longest `min_validity` a display may ask for: Entra ID's longest
/// configurable access-token lifetime is one day, so a longer wish could
/// never be met and would be answered 503 forever.
const MAX_MIN_VALIDITY_SECS: u64 = 86_400;

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": "invalid_request", "message": message})),
    )
        .into_response()
}

pub async fn token(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    key: BearerKey,
    headers: HeaderMap,
    origin: RequestOrigin,
) -> Response {
    let Ok(Query(query)) = query else {
        return bad_request(
            "The query string is not understood: use resource=NAME and min_validity=SECONDS, each at most once.",
        );
    };
    let min_validity = match query.min_validity.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(seconds)) if seconds <= MAX_MIN_VALIDITY_SECS => Some(Duration::from_secs(seconds)),
        Some(_) => {
            broker
                .read_metrics
                .record(ReadOutcome::BadRequest, std::time::Instant::now());
            return bad_request(
                "min_validity must be a whole number of seconds, at most 86400 (no access token lives longer than a day).",
            );
        }
    };
    let request = TokenRequest {
        connection: &id,
        key: presented(&key),
        resource: query.resource.as_deref(),
        min_validity,
    };
    let (response, outcome) = match read_token(&broker, request, broker.now()).await {
        Ok(reply) => {
            let if_none_match = readable_if_none_match(&headers);
            let (response, not_modified) = token_response(&reply, if_none_match.as_ref());
            audit::token_served(&origin, &request, &reply, not_modified);
            let outcome = if not_modified {
                ReadOutcome::NotModified
            } else {
                ReadOutcome::Served
            };
            (response, outcome)
        }
        Err(e) => {
            audit::token_refused(&origin, &request, &e);
            let outcome = match &e {
                ReadError::Unauthorized(_) => ReadOutcome::Unauthorized,
                ReadError::NotServing { state, .. }
                | ReadError::InsufficientValidity { state, .. } => ReadOutcome::Unavailable(*state),
                ReadError::UnknownResource(_) => ReadOutcome::BadRequest,
                ReadError::Store(_) => ReadOutcome::StoreError,
            };
            (e.into_response(), outcome)
        }
    };
    broker
        .read_metrics
        .record(outcome, std::time::Instant::now());
    broker.read_metrics.print_due();
    response
}

/// 200 with the token, or 304 when the display already has it; both carry
/// the same validator and freshness.
fn token_response(reply: &TokenReply, if_none_match: Option<&IfNoneMatch>) -> (Response, bool) {
    let served = &reply.served;
    let cache = HeaderValue::from_str(&format!("private, max-age={}", reply.max_age));
    let (Ok(cache), Some(etag)) = (cache, entity_tag(&served.fingerprint)) else {
        // Both are ASCII built here; unreachable, but never a panic.
        return (StatusCode::INTERNAL_SERVER_ERROR.into_response(), false);
    };
    let headers = ([(header::CACHE_CONTROL, cache)], TypedHeader(etag.clone()));
    if not_modified(if_none_match, &etag) {
        return ((StatusCode::NOT_MODIFIED, headers).into_response(), true);
    }
    let body = TokenBody {
        access_token: served.token.access_token.expose(),
        token_type: &served.token.token_type,
        expires_at: &served.expires_at,
        expires_in: reply.expires_in,
        scope: &served.token.scope,
        resource: &served.token.resource,
        account: &served.account,
    };
    ((headers, Json(body)).into_response(), false)
}

pub async fn status(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    key: BearerKey,
    origin: RequestOrigin,
) -> Response {
    let presented = presented(&key);
    let result = read_status(&broker, &id, presented, broker.now()).await;
    audit::status_read(&origin, &id, presented, &result);
    match result {
        Ok(view) => ([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /openapi.json`
pub async fn openapi() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        OPENAPI_JSON,
    )
        .into_response()
}

/// The one 401 body: the same bytes for a wrong, missing or revoked key and
/// for an unknown connection, so the API is no oracle for connection ids.
const UNAUTHORIZED_BODY: &str = r#"{"error":"unauthorized","message":"A valid device key is required: send Authorization: Bearer <device key>."}"#;

fn json_error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn unavailable(body: serde_json::Value, retry_after: Duration) -> Response {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, body);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after.as_secs()),
    );
    response
}

impl IntoResponse for ReadError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::WWW_AUTHENTICATE, "Bearer"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                UNAUTHORIZED_BODY,
            )
                .into_response(),
            Self::UnknownResource(name) => json_error(
                StatusCode::NOT_FOUND,
                json!({"error": "unknown_resource", "message": format!("This connection has no resource '{name}'.")}),
            ),
            Self::NotServing {
                state,
                mode,
                retry_after,
            } => unavailable(
                json!({
                    "error": "no_valid_token",
                    "state": state,
                    "message": format!("No valid token can be served. {}", state.advice_for(mode)),
                }),
                retry_after,
            ),
            Self::InsufficientValidity {
                state,
                expires_in,
                retry_after,
            } => unavailable(
                json!({
                    "error": "insufficient_validity",
                    "state": state,
                    "message": format!(
                        "The current token expires in {expires_in} seconds, sooner than min_validity asks: ask again after Retry-After, or for less."
                    ),
                }),
                retry_after,
            ),
            // Already in the read's audit line.
            Self::Store(_) => unavailable(
                json!({"error": "store_unavailable", "message": "The token store is unavailable; try again shortly."}),
                Duration::from_secs(5),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum_extra::headers::{Header, HeaderValue as Value};

    proptest::proptest! {
        /// Any `If-None-Match` a display sends is decoded or ignored, and
        /// compared without a panic; a header that lists the tag (alone,
        /// weak, or among others) always matches it.
        #[test]
        fn any_if_none_match_is_compared_without_panic(
            text in "[ -~]{0,120}",
            others in "(\"[a-z0-9]{1,8}\", ){0,3}",
        ) {
            let tag = entity_tag("0123456789abcdef0123456789abcdef").unwrap();
            if let Ok(value) = Value::from_str(&text) {
                let mut headers = HeaderMap::new();
                headers.insert(header::IF_NONE_MATCH, value);
                let _ = not_modified(readable_if_none_match(&headers).as_ref(), &tag);
            }
            let listed = format!("{others}W/\"0123456789abcdef0123456789abcdef\"");
            proptest::prop_assert!(not_modified(Some(&header(&listed)), &tag));
        }
    }

    fn header(text: &str) -> IfNoneMatch {
        let value = Value::from_str(text).unwrap();
        IfNoneMatch::decode(&mut std::iter::once(&value)).unwrap()
    }

    #[test]
    fn a_tag_with_a_space_is_no_header_rather_than_a_panic() {
        // Found by the property test above: `headers` asserts on it.
        let tag = entity_tag("0123456789abcdef0123456789abcdef").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, Value::from_static("\" \""));
        assert!(readable_if_none_match(&headers).is_none());
        assert!(!not_modified(None, &tag));
        headers.insert(header::IF_NONE_MATCH, Value::from_static("W/\"a\", \"b\""));
        assert!(
            readable_if_none_match(&headers).is_some(),
            "spaces between tags are fine"
        );
    }

    #[test]
    fn if_none_match_compares_lists_weakly_and_takes_a_star() {
        let fingerprint = "0123456789abcdef0123456789abcdef";
        let tag = entity_tag(fingerprint).unwrap();
        let quoted = format!("\"{fingerprint}\"");
        assert!(not_modified(Some(&header(&quoted)), &tag));
        assert!(not_modified(Some(&header(&format!("W/{quoted}"))), &tag));
        assert!(not_modified(
            Some(&header(&format!("\"other\", {quoted}"))),
            &tag
        ));
        assert!(not_modified(Some(&header("*")), &tag));
        assert!(!not_modified(Some(&header("\"other\"")), &tag));
        assert!(!not_modified(None, &tag));
        assert!(
            !not_modified(Some(&header(fingerprint)), &tag),
            "unquoted is not the same tag"
        );
    }
}
