//! The display-facing JSON API, as described by `shared/openapi.json`.

use crate::Broker;
use crate::flows::read::{ReadError, TokenReply, TokenRequest, read_status, read_token};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
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

/// The 200 body of the token route (DESIGN.md).
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

/// The device key from `Authorization: Bearer <key>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

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
    headers: HeaderMap,
) -> Response {
    let Ok(Query(query)) = query else {
        return bad_request(
            "The query string is not understood: use resource=NAME and min_validity=SECONDS, each at most once.",
        );
    };
    let min_validity = match query.min_validity.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(seconds)) => Some(Duration::from_secs(seconds)),
        Some(Err(_)) => {
            return bad_request("min_validity must be a whole number of seconds.");
        }
    };
    let request = TokenRequest {
        connection: &id,
        key: bearer(&headers),
        resource: query.resource.as_deref(),
        min_validity,
        if_none_match: headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok()),
    };
    match read_token(&broker, request, broker.now()).await {
        Ok(reply) => token_response(&reply),
        Err(e) => error_response(e),
    }
}

/// 200 with the token, or 304 when the display already has it; both carry
/// the same validator and freshness.
fn token_response(reply: &TokenReply) -> Response {
    let cache = HeaderValue::from_str(&format!("private, max-age={}", reply.max_age));
    let etag = HeaderValue::from_str(&reply.served.etag);
    let (Ok(cache), Ok(etag)) = (cache, etag) else {
        // Both are ASCII built here; unreachable, but never a panic.
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let headers = [(header::CACHE_CONTROL, cache), (header::ETAG, etag)];
    if reply.not_modified {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let served = &reply.served;
    let body = TokenBody {
        access_token: served.token.access_token.expose(),
        token_type: &served.token.token_type,
        expires_at: &served.expires_at,
        expires_in: reply.expires_in,
        scope: &served.token.scope,
        resource: &served.token.resource,
        account: &served.account,
    };
    (headers, Json(body)).into_response()
}

pub async fn status(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match read_status(&broker, &id, bearer(&headers), broker.now()).await {
        Ok(view) => ([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response(),
        Err(e) => error_response(e),
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

fn error_response(error: ReadError) -> Response {
    let json_error = |status: StatusCode, body: serde_json::Value| {
        (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
    };
    let unavailable = |body: serde_json::Value, retry_after: Duration| {
        let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, body);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.as_secs()),
        );
        response
    };
    match error {
        ReadError::Unauthorized(_) => (
            StatusCode::UNAUTHORIZED,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            UNAUTHORIZED_BODY,
        )
            .into_response(),
        ReadError::UnknownResource(name) => json_error(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown_resource", "message": format!("This connection has no resource '{name}'.")}),
        ),
        ReadError::NotServing { state, retry_after } => unavailable(
            json!({
                "error": "no_valid_token",
                "state": state,
                "message": format!("No valid token can be served. {}", state.advice()),
            }),
            retry_after,
        ),
        ReadError::InsufficientValidity {
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
        ReadError::Store(_) => unavailable(
            json!({"error": "store_unavailable", "message": "The token store is unavailable; try again shortly."}),
            Duration::from_secs(5),
        ),
    }
}
