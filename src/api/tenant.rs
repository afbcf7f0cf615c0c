//! "Who is asking": the tenant of a request, computed once by an extractor.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use crate::model::{Tenant, TENANT_HEADER};

/// The tenant of the request, from `X-Scope-OrgID` (absent: `anonymous`).
/// When authentication arrives, this is the single place that decides.
#[derive(Debug, Clone)]
pub struct TenantId(pub Tenant);

impl<S: Send + Sync> FromRequestParts<S> for TenantId {
    type Rejection = (StatusCode, String);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(TENANT_HEADER) {
            None => Ok(TenantId(Tenant::anonymous())),
            Some(v) => {
                let s = v.to_str().map_err(|_| {
                    (
                        StatusCode::BAD_REQUEST,
                        "X-Scope-OrgID is not valid ASCII".to_string(),
                    )
                })?;
                Tenant::new(s.trim())
                    .map(TenantId)
                    .map_err(|e| (StatusCode::BAD_REQUEST, e))
            }
        }
    }
}
