//! The audit log of display reads: one line per answer (connection, key id,
//! never the key, resource and outcome). Written here because only the
//! HTTP edge knows the whole answer, a 304 included.
//!
//! Every value the `logged_*` functions return is written to the log as it
//! is (no quoting or escaping), so each is checked to be plain first.

use crate::domain::ConnectionId;
use crate::domain::device_key::key_id;
use crate::flows::read::{ReadError, StatusView, TokenReply, TokenRequest};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use lambda_http::request::RequestContext;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// Where a request came from, so that an audit line joins the API access
/// log: API Gateway's request id and the client's IP under Lambda, the
/// peer's address under `roomtoken serve`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestOrigin {
    pub request_id: Option<String>,
    pub source_ip: Option<IpAddr>,
}

impl RequestOrigin {
    /// The span every audit line of this request is written in.
    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "request",
            request_id = %self.request_id.as_deref().unwrap_or("-"),
            source_ip = %self.source_ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into()),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestOrigin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Behind the stack's CloudFront, the connection comes from its edge:
        // the viewer's address is CloudFront's header, believed only once
        // the origin header proved the request came through CloudFront.
        let viewer = parts
            .extensions
            .get::<super::edge::ViaEdge>()
            .and_then(|_| super::edge::viewer_address(&parts.headers));
        if let Some(RequestContext::ApiGatewayV2(context)) = parts.extensions.get() {
            return Ok(Self {
                request_id: context.request_id.clone().filter(|id| is_plain_id(id)),
                source_ip: viewer.or_else(|| {
                    context
                        .http
                        .source_ip
                        .as_deref()
                        .and_then(|ip| ip.parse().ok())
                }),
            });
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        Ok(Self {
            request_id: None,
            source_ip: viewer.or(peer),
        })
    }
}

/// API Gateway's request ids are short base64-like strings.
fn is_plain_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-+/".contains(&b))
}

/// One line for a token served; `not_modified` when the display already
/// had it.
pub(super) fn token_served(
    origin: &RequestOrigin,
    request: &TokenRequest<'_>,
    reply: &TokenReply,
    not_modified: bool,
) {
    let _origin = origin.span().entered();
    tracing::info!(
        connection = %logged_connection(request.connection),
        key_id = %logged_key_id(request.key),
        resource = %reply.served.token.resource,
        outcome = %if not_modified { "not_modified" } else { "served" },
        expires_in = reply.expires_in,
        "token read"
    );
}

/// One line for a token read that was refused.
pub(super) fn token_refused(origin: &RequestOrigin, request: &TokenRequest<'_>, error: &ReadError) {
    let _origin = origin.span().entered();
    let connection = logged_connection(request.connection);
    let key_id = logged_key_id(request.key);
    let resource = logged_resource(request.resource);
    match error {
        ReadError::Unauthorized(refusal) => tracing::info!(
            connection = %connection,
            key_id = %key_id,
            resource = %resource,
            outcome = %"unauthorized",
            reason = %<&str>::from(refusal),
            "token read"
        ),
        ReadError::NotServing { state, .. } | ReadError::InsufficientValidity { state, .. } => {
            tracing::info!(
                connection = %connection,
                key_id = %key_id,
                resource = %resource,
                outcome = %error.outcome(),
                state = %state,
                "token read"
            )
        }
        ReadError::UnknownResource(_) => tracing::info!(
            connection = %connection,
            key_id = %key_id,
            resource = %resource,
            outcome = %error.outcome(),
            "token read"
        ),
        ReadError::Store(e) => tracing::warn!(
            connection = %connection,
            key_id = %key_id,
            resource = %resource,
            outcome = %"store_error",
            error = %e,
            "token read"
        ),
    }
}

/// One line for a status read.
pub(super) fn status_read(
    origin: &RequestOrigin,
    connection: &str,
    presented_key: Option<&str>,
    result: &Result<StatusView, ReadError>,
) {
    let _origin = origin.span().entered();
    let key_id = logged_key_id(presented_key);
    let connection = logged_connection(connection);
    match result {
        Ok(view) => tracing::info!(
            connection = %connection,
            key_id = %key_id,
            outcome = %"served",
            state = %view.state,
            "status read"
        ),
        Err(ReadError::Unauthorized(refusal)) => tracing::info!(
            connection = %connection,
            key_id = %key_id,
            outcome = %"unauthorized",
            reason = %<&str>::from(refusal),
            "status read"
        ),
        Err(e) => tracing::warn!(
            connection = %connection,
            key_id = %key_id,
            outcome = %e.outcome(),
            error = %e,
            "status read"
        ),
    }
}

/// The public id of a well-shaped key; `-` otherwise.
fn logged_key_id(presented: Option<&str>) -> &str {
    presented
        .and_then(key_id)
        .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or("-")
}

/// The resource asked for when it looks like a resource name (as `ews`,
/// `graph` or `default` do); `-` otherwise.
fn logged_resource(resource: Option<&str>) -> &str {
    resource
        .filter(|name| {
            (1..=32).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or("-")
}

/// The connection id when it is one; `-` otherwise, so that a made-up path
/// cannot write what it likes (or as much as it likes) in the log.
fn logged_connection(connection: &str) -> &str {
    if ConnectionId::is_valid(connection) {
        connection
    } else {
        "-"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CloudFront's `CloudFront-Viewer-Address` names the source only on a
    /// request whose origin header was verified; anyone else can send it.
    #[tokio::test]
    async fn the_viewer_address_is_believed_only_through_the_edge() {
        let origin = |via_edge: bool| async move {
            let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
            let mut request = axum::http::Request::get("/")
                .header("cloudfront-viewer-address", "198.51.100.10:46532")
                .extension(ConnectInfo(peer));
            if via_edge {
                request = request.extension(super::super::edge::ViaEdge);
            }
            let (mut parts, ()) = request.body(()).unwrap().into_parts();
            RequestOrigin::from_request_parts(&mut parts, &())
                .await
                .unwrap()
                .source_ip
        };
        assert_eq!(origin(true).await, "198.51.100.10".parse().ok());
        assert_eq!(
            origin(false).await,
            "192.0.2.1".parse().ok(),
            "a forged header is ignored"
        );
    }

    #[test]
    fn log_fields_keep_only_what_looks_like_ids() {
        assert_eq!(logged_connection("contoso"), "contoso");
        assert_eq!(logged_connection("../etc\nINFO forged"), "-");
        assert_eq!(logged_connection(&"a".repeat(65)), "-");
        assert_eq!(logged_resource(Some("graph")), "graph");
        assert_eq!(logged_resource(Some("x\" outcome=served")), "-");
        assert_eq!(logged_resource(None), "-");
        assert_eq!(logged_key_id(Some("rtk_3f9a1c0b2e_c2VjcmV0")), "3f9a1c0b2e");
        assert_eq!(logged_key_id(Some("hunter2")), "-");
        assert_eq!(logged_key_id(Some("rtk_3f9a\n0b2e1_c2VjcmV0")), "-");
        assert!(is_plain_id("KaB3xjZ8IAMEV0w="));
        assert!(!is_plain_id("x\" forged=1"));
    }
}
