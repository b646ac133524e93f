//! Microsoft-shaped error answers (`error`, `error_description` with AADSTS number,
//! `error_codes`, trace and correlation ids).

use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

/// Per-request identifiers echoed in every answer, as Microsoft does.
#[derive(Clone, Debug)]
pub(crate) struct RequestCtx {
    /// The caller's `client-request-id` when it is a UUID, else a fresh one.
    pub correlation_id: String,
    /// Whether the caller sent `client-request-id` (then it is echoed as a header).
    pub echo_client_request_id: bool,
    /// Fresh per answer.
    pub trace_id: String,
}

/// Every handler starts from the request's ids.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestCtx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

impl RequestCtx {
    /// Builds the context from request headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let given = headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::parse_str(v).ok());
        Self {
            correlation_id: given.unwrap_or_else(Uuid::new_v4).to_string(),
            echo_client_request_id: given.is_some(),
            trace_id: Uuid::new_v4().to_string(),
        }
    }

    /// Response headers Microsoft sends with token endpoint answers.
    pub fn response_headers(&self, content_type: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache"),
        );
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Ok(v) = HeaderValue::from_str(&self.trace_id) {
            h.insert("x-ms-request-id", v);
        }
        if self.echo_client_request_id
            && let Ok(v) = HeaderValue::from_str(&self.correlation_id)
        {
            h.insert("client-request-id", v);
        }
        h
    }

    /// `AADSTSnnn: message` followed by the trace lines Microsoft appends.
    pub fn describe(&self, code: u32, message: &str, now: SystemTime) -> String {
        format!(
            "AADSTS{code}: {message}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            self.trace_id,
            self.correlation_id,
            ms_timestamp(now)
        )
    }
}

/// `yyyy-mm-dd hh:mm:ssZ`, the format of Microsoft's `timestamp` field.
pub(crate) fn ms_timestamp(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

/// A token endpoint error before it is rendered.
#[derive(Clone, Debug)]
pub(crate) struct AadError {
    pub status: StatusCode,
    pub error: String,
    pub code: u32,
    pub message: String,
    pub suberror: Option<String>,
    /// The `Retry-After` header's value, as sent.
    pub retry_after: Option<String>,
}

impl AadError {
    /// An error with an explicit message (never put secrets in it).
    pub fn new(status: StatusCode, error: &str, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            error: error.to_owned(),
            code,
            message: message.into(),
            suberror: None,
            retry_after: None,
        }
    }

    /// An error using Microsoft's standard text for `code`.
    pub fn standard(status: StatusCode, error: &str, code: u32) -> Self {
        Self::new(status, error, code, default_message(code))
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", code, message)
    }

    /// 400 `invalid_grant`.
    pub fn invalid_grant(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", code, message)
    }

    /// 400 `invalid_scope`.
    pub fn invalid_scope(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", code, message)
    }

    /// 401 `invalid_client`.
    pub fn invalid_client(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", code, message)
    }

    /// AADSTS900144: a required parameter is missing.
    pub fn missing_param(name: &str) -> Self {
        Self::invalid_request(
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    /// AADSTS9002313: the generic "malformed request".
    pub fn malformed(error: &str) -> Self {
        Self::standard(StatusCode::BAD_REQUEST, error, 9002313)
    }

    /// Renders the JSON body and headers.
    pub fn into_response(self, ctx: &RequestCtx) -> Response {
        let now = SystemTime::now();
        let body = ErrorBody {
            error: &self.error,
            error_description: ctx.describe(self.code, &self.message, now),
            error_codes: [self.code],
            timestamp: ms_timestamp(now),
            trace_id: &ctx.trace_id,
            correlation_id: &ctx.correlation_id,
            error_uri: format!("https://login.microsoftonline.com/error?code={}", self.code),
            suberror: self.suberror.as_deref(),
        };
        let mut headers = ctx.response_headers("application/json; charset=utf-8");
        if let Some(value) = &self.retry_after
            && let Ok(v) = HeaderValue::from_str(value)
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        let json = serde_json::to_string(&body).unwrap_or_default();
        (self.status, headers, json).into_response()
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: String,
    error_codes: [u32; 1],
    timestamp: String,
    trace_id: &'a str,
    correlation_id: &'a str,
    error_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    suberror: Option<&'a str>,
}

/// Microsoft's wording for the AADSTS codes the fake produces or is likely to be
/// asked to inject. Codes whose real text names a client, tenant or user are
/// built at the call site instead.
pub(crate) fn default_message(code: u32) -> &'static str {
    match code {
        50000 => "There was an error issuing a token or an issue with our sign-in service.",
        50011 => {
            "The redirect URI specified in the request does not match the redirect URIs configured for the application."
        }
        50020 => {
            "User account from identity provider does not exist in tenant and cannot access the application in that tenant."
        }
        50034 => "The user account does not exist in the directory.",
        50053 => {
            "Your account is locked because you've tried to sign in too many times with an incorrect user ID or password."
        }
        50055 => "The password is expired.",
        50057 => "The user account is disabled.",
        50058 => "A silent sign-in request was sent but no user is signed in.",
        50076 => {
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource."
        }
        50079 => {
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access the resource."
        }
        50126 => "Error validating credentials due to invalid username or password.",
        50158 => "External security challenge was not satisfied.",
        50173 => {
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password."
        }
        50196 => {
            "The server terminated an operation because it encountered a client request loop. Please contact your app vendor."
        }
        53000 => {
            "Device is not in required device state: compliant. Conditional Access policy requires a compliant device, and the device is not compliant."
        }
        53001 => "Device is not in required device state: domain_joined.",
        53003 => {
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."
        }
        54005 => {
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token."
        }
        65001 => {
            "The user or administrator has not consented to use the application. Send an interactive authorization request for this user and resource."
        }
        65004 => "User declined to consent to access the app.",
        70000 => "Provided grant is invalid or malformed.",
        70008 => {
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource."
        }
        70011 => "The provided value for the input parameter 'scope' is not valid.",
        70043 => {
            "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access."
        }
        90002 => {
            "Tenant not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        }
        90055 => {
            "There are too many incoming requests. This exception is thrown for blocked tenants."
        }
        90006 => "The server encountered an unexpected error. Please retry the request.",
        90015 => "Requested query string is too long.",
        90024 => "A transient error has occurred. Please try again.",
        90033 => "A transient error has occurred. Please try again.",
        500011 => "The resource principal was not found in the tenant.",
        501481 => {
            "The Code_Verifier does not match the code_challenge supplied in the authorization request."
        }
        700016 => "Application was not found in the directory.",
        700022 => {
            "The provided value for the input parameter scope is not valid because it contains more than one resource."
        }
        700082 => {
            "The refresh token has expired due to inactivity. The token was issued on a date more than 90 days ago and was inactive."
        }
        7000215 => {
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID."
        }
        7000218 => {
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."
        }
        7000222 => {
            "The provided client secret keys are expired. Create new keys for your app, or consider using certificate credentials for added security."
        }
        9002313 => "Invalid request. Request is malformed or invalid.",
        _ => "An error was simulated by the fake identity platform.",
    }
}
