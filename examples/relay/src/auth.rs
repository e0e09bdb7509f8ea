//! Token checks. Where a client may put its token: the handshake's `Authorization: Bearer`
//! header, a `?token=` query parameter, or (WebSocket only) `hello.token`. The rule for a
//! WebSocket handshake: a correct token is accepted, a wrong one refused with HTTP 401, and
//! none at all accepted on condition that `hello` brings it (else close 4001), because
//! browsers cannot set headers and may prefer not to put tokens in URLs.

use crate::http::RequestHead;

/// What a handshake established about the client's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No token is required, or the handshake carried the right one.
    Granted,
    /// A token is required and the handshake carried none: `hello` must bring it.
    HelloMustProve,
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
        Some(token) if token_matches(required, &token) => Ok(Access::Granted),
        Some(_) => Err(Refused),
        None => Ok(Access::HelloMustProve),
    }
}

/// The token in the `Authorization: Bearer` header, else in the `token` query parameter.
fn presented(head: &RequestHead) -> Option<String> {
    let bearer = head.header("authorization").and_then(|value| {
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    });
    bearer.or_else(|| head.query_param("token"))
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
        assert_eq!(check(Some("t"), query).await, Err(Refused));
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
