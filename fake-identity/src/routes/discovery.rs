//! `GET {base}/{tenant}/v2.0/.well-known/openid-configuration` (a subset).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::Shared;

/// Answers the OpenID Provider metadata for a known tenant, 400 otherwise.
/// A verified domain answers with its tenant's id, as Microsoft's does.
pub(crate) async fn get(State(shared): State<Arc<Shared>>, Path(tenant): Path<String>) -> Response {
    let tenant = {
        let st = shared.lock();
        if !st.knows_tenant(&tenant) {
            return StatusCode::BAD_REQUEST.into_response();
        }
        st.resolve(&tenant).to_owned()
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
        "tenant_region_scope": "NA",
        "cloud_instance_name": "fake.invalid",
    }))
    .into_response()
}
