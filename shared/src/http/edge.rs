//! With the stack's CloudFront distribution in front (the per-source rate
//! limit), the API must answer only what came through it: otherwise a
//! client calls the execute-api URL directly, past the limit, and the audit
//! names CloudFront's edge instead of the display. CloudFront adds a secret
//! origin header to every request it forwards (a viewer's own header of
//! that name is replaced, never passed on); the functions check it in
//! constant time and refuse anything else.

use crate::Broker;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The header CloudFront adds, whose value is `system/edge-origin`.
pub const ORIGIN_HEADER: &str = "x-roomtoken-origin";

/// What CloudFront says the viewer's address was (`ip:port`).
const VIEWER_ADDRESS: &str = "cloudfront-viewer-address";

/// Marks a request whose origin header was verified: its
/// `CloudFront-Viewer-Address` may be believed.
#[derive(Clone, Copy, Debug)]
pub struct ViaEdge;

/// Refuses (403) a request without the right origin header; one that has
/// it goes on, marked [`ViaEdge`].
pub async fn only_through_edge(
    State(broker): State<Arc<Broker>>,
    mut request: Request,
    next: Next,
) -> Response {
    // A request without the header is refused before anything is read:
    // junk sent straight to the API costs no store call.
    let Some(presented) = request.headers().get(ORIGIN_HEADER) else {
        return refused(false);
    };
    let secret = match broker.edge_origin_secret().await {
        Ok(secret) => secret,
        Err(e) => {
            tracing::error!(error = %e, "the edge origin secret cannot be read: refusing every request");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CACHE_CONTROL, "no-store")],
                "unavailable\n",
            )
                .into_response();
        }
    };
    if !bool::from(presented.as_bytes().ct_eq(secret.expose().as_bytes())) {
        return refused(true);
    }
    request.extensions_mut().insert(ViaEdge);
    next.run(request).await
}

/// The 403 of a request that did not come through the distribution.
fn refused(header_present: bool) -> Response {
    tracing::warn!(
        header_present,
        "refused a request that did not come through the CloudFront distribution"
    );
    (
        StatusCode::FORBIDDEN,
        [(header::CACHE_CONTROL, "no-store")],
        "use the service's public URL\n",
    )
        .into_response()
}

/// The viewer's address CloudFront gives (`198.51.100.10:46532`, or an
/// IPv6 address and its port), if readable.
pub fn viewer_address(headers: &HeaderMap) -> Option<IpAddr> {
    let value = headers.get(VIEWER_ADDRESS)?.to_str().ok()?;
    let (ip, port) = value.trim().rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_viewer_address_is_read_with_its_port() {
        let read = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(VIEWER_ADDRESS, value.parse().unwrap());
            viewer_address(&headers)
        };
        assert_eq!(read("198.51.100.10:46532"), "198.51.100.10".parse().ok());
        assert_eq!(read("2001:db8::1:443"), "2001:db8::1".parse().ok());
        assert_eq!(read("[2001:db8::2]:443"), "2001:db8::2".parse().ok());
        assert_eq!(read("198.51.100.10"), None, "no port: not CloudFront's");
        assert_eq!(read("not-an-ip:1"), None);
        assert_eq!(viewer_address(&HeaderMap::new()), None);
    }
}
