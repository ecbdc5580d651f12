//! The bearer token check of the HTTP trigger.
//!
//! The caller sends `Authorization: Bearer <token>`; the token configured in
//! `http_trigger.token` is resolved through the secret resolver at each request (its cache
//! makes that cheap, and a rotated token takes effect when the cache expires). Both tokens
//! are hashed with SHA-256 and the digests compared in constant time, so neither the
//! length nor a common prefix of the expected token shows in the answer's timing. A
//! token that cannot be resolved fails closed: the request is refused with 503, never let
//! through.

use sha2::{Digest as _, Sha256};

/// What the `Authorization` header says about the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The header carries the expected token.
    Allowed,
    /// No `Authorization` header, or not a bearer token.
    Missing,
    /// A bearer token, not the expected one.
    Wrong,
}

/// Checks the `Authorization` header value against `expected`.
pub fn check(header: Option<&[u8]>, expected: &str) -> Verdict {
    let Some(token) = header.and_then(bearer_token) else {
        return Verdict::Missing;
    };
    if same(token, expected.as_bytes()) {
        Verdict::Allowed
    } else {
        Verdict::Wrong
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 6750 / RFC 9110).
fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether `a` and `b` are equal, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_bearer_token_is_allowed() {
        assert_eq!(check(Some(b"Bearer s3cret"), "s3cret"), Verdict::Allowed);
        assert_eq!(check(Some(b"bearer  s3cret "), "s3cret"), Verdict::Allowed);
        assert_eq!(check(Some(b"Bearer s3cre"), "s3cret"), Verdict::Wrong);
        assert_eq!(check(Some(b"Bearer s3cretX"), "s3cret"), Verdict::Wrong);
        assert_eq!(check(Some(b"Basic czNjcmV0"), "s3cret"), Verdict::Missing);
        assert_eq!(check(Some(b"Bearer "), "s3cret"), Verdict::Missing);
        assert_eq!(check(None, "s3cret"), Verdict::Missing);
    }
}
