//! Token checks. Where a client may put its token: the handshake's `Authorization: Bearer`
//! header, a `?token=` query parameter, or (WebSocket only) `hello.token`. The rule for a
//! WebSocket handshake: a correct token is accepted; a wrong one in the header is refused with
//! HTTP 401; a wrong one in the query is accepted only to be closed at once with 4001, because
//! a browser's WebSocket never sees an HTTP status (a 401 would look like a network failure and
//! be retried for ever, while 4001 tells the client to refresh its token once, then stop);
//! none at all is accepted on condition that `hello` brings it (else close 4001), because
//! browsers cannot set headers and may prefer not to put tokens in URLs.

use crate::http::RequestHead;

/// What a handshake established about the client's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No token is required, or the handshake carried the right one.
    Granted,
    /// A token is required and the handshake carried none: `hello` must bring it.
    HelloMustProve,
    /// A wrong token came in the URL: upgrade, then close with 4001 where a browser sees it.
    RefusedInUrl,
}

/// The handshake carried a token and it is wrong: answer HTTP 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused;

/// Checks the token a handshake carries against the `required` one.
pub(crate) fn check_handshake(
    required: Option<&str>,
    head: &RequestHead,
) -> Result<Access, Refused> {
    let Some(required) = required else {
        return Ok(Access::Granted);
    };
    match presented(head) {
        Some((token, _)) if token_matches(required, &token) => Ok(Access::Granted),
        Some((_, Where::Header)) => Err(Refused),
        Some((_, Where::Query)) => Ok(Access::RefusedInUrl),
        None => Ok(Access::HelloMustProve),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Header,
    Query,
}

/// The token in the `Authorization: Bearer` header, else in the `token` query parameter.
fn presented(head: &RequestHead) -> Option<(String, Where)> {
    let bearer = head.header("authorization").and_then(|value| {
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| (token.trim().to_owned(), Where::Header))
    });
    bearer.or_else(|| head.query_param("token").map(|t| (t, Where::Query)))
}

/// Compares in time independent of where the first difference is, so response timing does
/// not reveal how much of a guess was right.
pub(crate) fn token_matches(required: &str, presented: &str) -> bool {
    let (a, b) = (required.as_bytes(), presented.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::read_head;

    async fn check(required: Option<&str>, raw: &str) -> Result<Access, Refused> {
        let (head, _) = read_head(&mut raw.as_bytes()).await.expect("head");
        check_handshake(required, &head)
    }

    #[tokio::test]
    async fn the_handshake_rule() {
        let plain = "GET / HTTP/1.1\r\n\r\n";
        assert_eq!(check(None, plain).await, Ok(Access::Granted));
        assert_eq!(check(Some("t"), plain).await, Ok(Access::HelloMustProve));
        let header = "GET / HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n";
        assert_eq!(check(Some("t"), header).await, Ok(Access::Granted));
        assert_eq!(check(Some("u"), header).await, Err(Refused));
        let query = "GET /?x=1&token=t%21 HTTP/1.1\r\n\r\n";
        assert_eq!(check(Some("t!"), query).await, Ok(Access::Granted));
        assert_eq!(check(Some("t"), query).await, Ok(Access::RefusedInUrl));
        let other_scheme = "GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n";
        assert_eq!(
            check(Some("t"), other_scheme).await,
            Ok(Access::HelloMustProve)
        );
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("abc", "abcd"));
        assert!(!token_matches("abc", ""));
    }
}
