//! The `type` and `id` of a frame the relay does not decode whole: a client's frame that
//! failed (its error names the id), a publish over the rate limit (which may be a resend the
//! relay holds: then its `channel` is read too), or one of the relay's own frames too large
//! to send (replaced by an error naming its type and id). One reader and one echo rule.

use crate::session::MAX_ID_LEN;
use serde::Deserialize;
use serde_json::Value;

/// What [`head_of`] finds; a field missing, not a string, or (for `id`) too long is `None`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FrameHead {
    pub(crate) kind: Option<String>,
    /// At most [`MAX_ID_LEN`] bytes: a longer id is not echoed, or the error would be as
    /// large as the frame it is about.
    pub(crate) id: Option<String>,
    /// The `channel` a `publish` names.
    pub(crate) channel: Option<String>,
}

/// Reads the `type` and `id` of `text`, skipping every other field without building it (the
/// payload may be a megabyte; `type` and `id` are small unless the frame is odd, and a frame
/// is at most the message size). Each field is read on its own, so a frame whose `type` is
/// wrong still has its id named.
pub(crate) fn head_of(text: &str) -> FrameHead {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "type", default)]
        kind: Option<Value>,
        #[serde(default)]
        id: Option<Value>,
        #[serde(default)]
        channel: Option<Value>,
    }
    let Ok(raw) = serde_json::from_str::<Raw>(text) else {
        return FrameHead::default();
    };
    let string = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    FrameHead {
        kind: string(raw.kind),
        id: string(raw.id).filter(|id| id.len() <= MAX_ID_LEN),
        channel: string(raw.channel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(kind: Option<&str>, id: Option<&str>) -> FrameHead {
        FrameHead {
            kind: kind.map(str::to_owned),
            id: id.map(str::to_owned),
            channel: None,
        }
    }

    #[test]
    fn a_publishs_channel_is_read_too() {
        let text = r#"{"type":"publish","id":"p","channel":"room","payload":{"channel":"x"}}"#;
        assert_eq!(head_of(text).channel.as_deref(), Some("room"));
        assert_eq!(head_of(r#"{"type":"publish","channel":7}"#).channel, None);
    }

    #[test]
    fn type_and_id_are_read_each_on_its_own() {
        let cases = [
            (
                r#"{"type":"reply","id":"r1","payload":{"id":"no"}}"#,
                head(Some("reply"), Some("r1")),
            ),
            (r#"{"id":"a","type":7}"#, head(None, Some("a"))),
            (r#"{"type":"x","id":5}"#, head(Some("x"), None)),
            (
                r#"{"type":"x","id":[1,{"a":[]}],"v":1}"#,
                head(Some("x"), None),
            ),
            (r#"{"type":null,"id":{"deep":["x"]}}"#, head(None, None)),
            (r#"{"payload":1}"#, head(None, None)),
            ("nope", head(None, None)),
            ("[1]", head(None, None)),
        ];
        for (text, want) in cases {
            assert_eq!(head_of(text), want, "{text}");
        }
    }

    #[test]
    fn an_id_too_long_to_echo_is_dropped() {
        let exact = "i".repeat(MAX_ID_LEN);
        let text = format!(r#"{{"type":"publish","id":"{exact}"}}"#);
        assert_eq!(head_of(&text).id.as_deref(), Some(exact.as_str()));
        let long = format!(r#"{{"type":"publish","id":"{exact}i"}}"#);
        assert_eq!(head_of(&long), head(Some("publish"), None));
    }
}
