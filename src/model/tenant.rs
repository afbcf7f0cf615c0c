//! Tenants: every key, file path and cache entry is scoped by one.

use std::fmt;
use std::sync::Arc;

/// HTTP header that selects the tenant (Loki/Mimir convention).
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// Tenant used when a request carries no `X-Scope-OrgID`.
pub const DEFAULT_TENANT: &str = "anonymous";

/// A validated tenant id. Cheap to clone.
///
/// Ids are restricted to characters that are safe in file paths and object
/// keys (Mimir's rule: letters, digits and `!-_.*'()`), and may not be `.`
/// or `..`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(Arc<str>);

impl Tenant {
    /// Validates and wraps a tenant id.
    pub fn new(id: &str) -> Result<Tenant, String> {
        if id.is_empty() {
            return Err("tenant id is empty".into());
        }
        if id.len() > 150 {
            return Err(format!(
                "tenant id is {} bytes long, the limit is 150",
                id.len()
            ));
        }
        if id == "." || id == ".." {
            return Err(format!("tenant id {id:?} is not allowed"));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
        {
            return Err(format!(
                "tenant id {id:?} contains the unsupported character {c:?}"
            ));
        }
        Ok(Tenant(Arc::from(id)))
    }

    /// The default tenant, `anonymous`.
    pub fn anonymous() -> Tenant {
        Tenant(Arc::from(DEFAULT_TENANT))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant::anonymous()
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tenant({})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ids() {
        for ok in ["anonymous", "team-a", "a.b_c", "x(1)"] {
            assert!(Tenant::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü"] {
            assert!(Tenant::new(bad).is_err(), "{bad}");
        }
    }
}
