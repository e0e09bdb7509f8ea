//! The `type` and `id` of a frame the relay does not decode whole: a client's frame that
//! failed (its error names the id), or one of the relay's own frames too large to send
//! (replaced by an error naming its type and id). One reader and one echo rule for both.

use crate::session::MAX_ID_LEN;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// What [`head_of`] finds; a field missing, not a string, or (for `id`) too long is `None`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FrameHead {
    pub(crate) kind: Option<String>,
    /// At most [`MAX_ID_LEN`] bytes: a longer id is not echoed, or the error would be as
    /// large as the frame it is about.
    pub(crate) id: Option<String>,
}

/// Reads the `type` and `id` of `text`, skipping everything else without building it (the
/// payload may be a megabyte). Each field is read on its own, so a frame whose `type` is
/// wrong still has its id named.
pub(crate) fn head_of(text: &str) -> FrameHead {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "type", default)]
        kind: StringOrSkip,
        #[serde(default)]
        id: StringOrSkip,
    }
    let Ok(raw) = serde_json::from_str::<Raw>(text) else {
        return FrameHead::default();
    };
    FrameHead {
        kind: raw.kind.0,
        id: raw.id.0.filter(|id| id.len() <= MAX_ID_LEN),
    }
}

/// A JSON value kept if it is a string, skipped otherwise.
#[derive(Default)]
struct StringOrSkip(Option<String>);

impl<'de> Deserialize<'de> for StringOrSkip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StringOrSkipVisitor)
    }
}

struct StringOrSkipVisitor;

impl<'de> Visitor<'de> for StringOrSkipVisitor {
    type Value = StringOrSkip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, s: &str) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(Some(s.to_owned())))
    }

    fn visit_bool<E>(self, _: bool) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }

    fn visit_unit<E>(self) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrSkip, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(StringOrSkip(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringOrSkip, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(StringOrSkip(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(kind: Option<&str>, id: Option<&str>) -> FrameHead {
        FrameHead {
            kind: kind.map(str::to_owned),
            id: id.map(str::to_owned),
        }
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
