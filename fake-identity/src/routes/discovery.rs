//! `GET {base}/{tenant}/v2.0/.well-known/openid-configuration` (a subset).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::errors::{AadError, RequestCtx};
use crate::state::{Shared, key};

/// The cloud of every tenant not moved with `set_tenant_cloud`.
const GLOBAL_INSTANCE: &str = "microsoftonline.com";

/// Answers the OpenID Provider metadata for a known tenant, and 400
/// `invalid_tenant` (AADSTS90002) otherwise, as Microsoft does. A verified
/// domain answers with its tenant's id; a tenant of another national cloud
/// names that cloud in `cloud_instance_name` and `tenant_region_scope`.
pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    ctx: RequestCtx,
) -> Response {
    let (tenant, instance) = {
        let st = shared.lock();
        if !st.knows_tenant(&tenant) {
            return AadError::new(
                StatusCode::BAD_REQUEST,
                "invalid_tenant",
                90002,
                format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                ),
            )
            .into_response(&ctx);
        }
        let resolved = st.resolve(&tenant).to_owned();
        let instance = st
            .tenant_clouds
            .get(&key(&resolved))
            .cloned()
            .unwrap_or_else(|| GLOBAL_INSTANCE.to_owned());
        (resolved, instance)
    };
    let region = match instance.as_str() {
        "microsoftonline.us" => "USGov",
        "partner.microsoftonline.cn" => "AS",
        _ => "NA",
    };
    Json(json!({
        "issuer": format!("{}/{tenant}/v2.0", shared.base_str()),
        "authorization_endpoint": shared.endpoint(&tenant, "authorize").as_str(),
        "token_endpoint": shared.endpoint(&tenant, "token").as_str(),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "tenant_region_scope": region,
        "cloud_instance_name": instance,
    }))
    .into_response()
}
