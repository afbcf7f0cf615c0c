//! "Who is asking": the tenant of a request, computed once per request from
//! `X-Scope-OrgID`, either by the [`TenantId`] extractor or by
//! [`tenant_from_headers`] for handlers that render the error in their own
//! protocol's format.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};

use crate::model::{Tenant, TENANT_HEADER};

/// The tenant of the request, from `X-Scope-OrgID` (absent: `anonymous`).
/// When authentication arrives, this is the single place that decides.
#[derive(Debug, Clone)]
pub struct TenantId(pub Tenant);

/// The tenant named by `X-Scope-OrgID` (absent: `anonymous`), or why the
/// header is invalid.
pub fn tenant_from_headers(headers: &HeaderMap) -> Result<Tenant, String> {
    match headers.get(TENANT_HEADER) {
        None => Ok(Tenant::anonymous()),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| "invalid X-Scope-OrgID header: not visible ASCII".to_string())?;
            Tenant::new(s.trim()).map_err(|e| format!("invalid X-Scope-OrgID header: {e}"))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TenantId {
    type Rejection = (StatusCode, String);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        tenant_from_headers(&parts.headers)
            .map(TenantId)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))
    }
}
