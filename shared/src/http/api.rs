//! The display-facing JSON API.

use crate::Broker;
use crate::flows::read::{ReadError, read_status, read_token};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Deserialize)]
pub struct TokenQuery {
    resource: Option<String>,
}

/// The device key from `Authorization: Bearer <key>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

pub async fn token(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    let now = OffsetDateTime::now_utc();
    match read_token(
        &broker,
        &id,
        bearer(&headers),
        query.resource.as_deref(),
        now,
    )
    .await
    {
        Ok(reply) => {
            let body = json!({
                "access_token": reply.access_token.expose(),
                "token_type": reply.token_type,
                "expires_at": reply.expires_at.format(&Rfc3339).unwrap_or_default(),
                "expires_in": reply.expires_in,
                "scope": reply.scope,
                "resource": reply.resource,
                "account": reply.account,
            });
            let cache = format!("private, max-age={}", reply.max_age);
            ([(header::CACHE_CONTROL, cache)], Json(body)).into_response()
        }
        Err(e) => error_response(e),
    }
}

pub async fn status(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match read_status(&broker, &id, bearer(&headers)).await {
        Ok(view) => ([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response(),
        Err(e) => error_response(e),
    }
}

/// The one 401 body: the same bytes for a wrong, missing or revoked key and
/// for an unknown connection, so the API is no oracle for connection ids.
const UNAUTHORIZED_BODY: &str = r#"{"error":"unauthorized","message":"A valid device key is required: send Authorization: Bearer <device key>."}"#;

fn error_response(error: ReadError) -> Response {
    let json_error = |status: StatusCode, body: serde_json::Value| {
        (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
    };
    match error {
        ReadError::Unauthorized => (
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
        ReadError::NotServing { state, retry_after } => {
            let mut response = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "error": "no_valid_token",
                    "state": state,
                    "message": format!("No valid token can be served. {}", state.advice()),
                }),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs()),
            );
            response
        }
        ReadError::Store(e) => {
            tracing::error!(error = %e, "store failed while reading a token");
            let mut response = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "store_unavailable", "message": "The token store is unavailable; try again shortly."}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
}
