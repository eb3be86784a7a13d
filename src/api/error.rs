//! [`ApiError`]: every way a management API call is refused, each with its status, a stable
//! `error` code and a sentence, written as the same JSON body the gateway uses.

use crate::denial::Denial;
use crate::manage::ManageError;
use serde_json::{json, Value};

/// A refused management API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The caller did not authenticate (401, 429 or 503 exactly as the gateway answers).
    #[error("{}", .0.message())]
    Denied(Denial),
    /// Authenticated, but this credential may not do this (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing, or not in the caller's org (404 `not_found`; the two are not told apart).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed: bad JSON, a missing or unknown field (400 `invalid_request`).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed, but a rule refuses it: policy, roles, permissions (422 `refused`).
    #[error("{0}")]
    Refused(String),
    /// The path exists, the method does not (405 `method_not_allowed`, with `Allow`).
    #[error("use {0}")]
    MethodNotAllowed(&'static str),
    /// The body is larger than the endpoint accepts (413 `body_too_large`).
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// Too many calls from this client (429 `rate_limited`, with `Retry-After`).
    #[error("too many requests; retry in {0} seconds")]
    RateLimited(u64),
    /// Redis failed or timed out (503 `auth_unavailable`, with `Retry-After`).
    #[error("the credential store is unavailable; retry shortly")]
    Unavailable,
    /// The write is in Redis, but a confirmed-mode gateway did not acknowledge it in time
    /// (503 `write_unconfirmed`, with `Retry-After`; store/fence.rs).
    #[error("{0}")]
    Unconfirmed(String),
    /// Something that should not happen (500 `internal`).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Denied(denial) => denial.status(),
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::BadRequest(_) => 400,
            ApiError::Refused(_) => 422,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::TooLarge(_) => 413,
            ApiError::RateLimited(_) => 429,
            ApiError::Unavailable | ApiError::Unconfirmed(_) => 503,
            ApiError::Internal => 500,
        }
    }

    /// The stable `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Denied(denial) => denial.code(),
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::Refused(_) => "refused",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Unavailable => "auth_unavailable",
            ApiError::Unconfirmed(_) => "write_unconfirmed",
            ApiError::Internal => "internal",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        match self {
            ApiError::Denied(denial) => {
                serde_json::from_slice(&denial.body()).unwrap_or_else(|_| json!({}))
            }
            _ => json!({ "error": self.code(), "message": self.to_string() }),
        }
    }

    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, `Allow`).
    pub fn headers(&self, realm: &str) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        match self {
            ApiError::Denied(denial) => {
                if let Some(challenge) = denial.www_authenticate(realm) {
                    headers.push(("WWW-Authenticate", challenge));
                }
                if let Some(seconds) = denial.retry_after() {
                    headers.push(("Retry-After", seconds.to_string()));
                }
            }
            ApiError::MethodNotAllowed(allow) => headers.push(("Allow", (*allow).to_string())),
            ApiError::RateLimited(seconds) => headers.push(("Retry-After", seconds.to_string())),
            ApiError::Unavailable | ApiError::Unconfirmed(_) => {
                headers.push(("Retry-After", "1".to_string()));
            }
            _ => {}
        }
        headers
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::Refused(message) => ApiError::Refused(message),
            ManageError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            ManageError::Store(e @ crate::store::StoreError::Unconfirmed { .. }) => {
                log::warn!("management API: {e}");
                ApiError::Unconfirmed(e.to_string())
            }
            ManageError::Store(e) => {
                log::warn!("management API: redis {}: {e}", e.kind());
                ApiError::Unavailable
            }
            ManageError::Hash(e) => {
                log::error!("management API: bcrypt: {e}");
                ApiError::Internal
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(ManageError::Store(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use std::time::Duration;

    #[test]
    fn an_unconfirmed_write_is_told_apart_from_an_unavailable_store() {
        let unconfirmed = ApiError::from(StoreError::Unconfirmed {
            pending: 2,
            waited: Duration::from_secs(3),
        });
        assert_eq!(unconfirmed.status(), 503);
        assert_eq!(unconfirmed.code(), "write_unconfirmed");
        assert_eq!(
            unconfirmed.headers("patgate"),
            vec![("Retry-After", "1".to_string())]
        );
        let body = unconfirmed.body();
        assert_eq!(body["error"], "write_unconfirmed");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("written, but 2 confirmed gateway"),
            "{message}"
        );

        let unavailable = ApiError::from(StoreError::Timeout(Duration::from_millis(50)));
        assert_eq!(
            (unavailable.status(), unavailable.code()),
            (503, "auth_unavailable")
        );
    }
}
