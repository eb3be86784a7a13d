//! Request hygiene checked before routing: requests that two HTTP parsers could frame
//! differently (request smuggling) and oversized header sections are refused, so nothing
//! ambiguous is ever forwarded. Pure code over the request header.

use crate::denial::Denial;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora::http::RequestHeader;

/// `Ok` for a request that is safe to route, else the denial.
///
/// # Errors
/// [`Denial::AmbiguousLength`] for `Content-Length` with `Transfer-Encoding` or differing
/// `Content-Length` values; [`Denial::HeadersTooLarge`] past `max_header_bytes`.
pub fn check(request: &RequestHeader, max_header_bytes: usize) -> Result<(), Denial> {
    let headers = &request.headers;
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if headers.contains_key(TRANSFER_ENCODING) || lengths.any(|other| other != first) {
            return Err(Denial::AmbiguousLength);
        }
    }
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > max_header_bytes {
        return Err(Denial::HeadersTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build("POST", b"/", None).expect("request");
        for (name, value) in headers {
            request
                .append_header(name.to_string(), *value)
                .expect("header");
        }
        request
    }

    #[test]
    fn plain_requests_pass() {
        assert_eq!(check(&request(&[("Content-Length", "5")]), 1024), Ok(()));
        assert_eq!(
            check(&request(&[("Transfer-Encoding", "chunked")]), 1024),
            Ok(())
        );
        let same = request(&[("Content-Length", "5"), ("Content-Length", "5")]);
        assert_eq!(check(&same, 1024), Ok(()));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let both = request(&[("Content-Length", "5"), ("Transfer-Encoding", "chunked")]);
        assert_eq!(check(&both, 1024), Err(Denial::AmbiguousLength));
        let two = request(&[("Content-Length", "5"), ("Content-Length", "6")]);
        assert_eq!(check(&two, 1024), Err(Denial::AmbiguousLength));
    }

    #[test]
    fn oversized_header_sections_are_refused() {
        let big = "x".repeat(2000);
        assert_eq!(
            check(&request(&[("X-Big", &big)]), 1024),
            Err(Denial::HeadersTooLarge)
        );
    }
}
