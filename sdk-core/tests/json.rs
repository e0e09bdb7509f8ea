//! Properties of `tether_core::json` against serde_json, the reference it replaces on the
//! engine's paths: the writer prints what serde_json prints, the parser reads back exactly what
//! the writer wrote (every float included), and on any text — valid documents written in every
//! legal style, and arbitrary garbage — the parser accepts exactly what serde_json accepts,
//! with the same value bit for bit (floats correctly rounded: the workspace builds serde_json
//! with `float_roundtrip`).
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use tether_core::json;

/// Equality that tells `0.0` from `-0.0` and compares floats bit for bit.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            x.is_f64() && y.is_f64() && x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

/// Both parsers on `text`: the same value, or both refuse it.
fn assert_agrees(text: &str) -> Result<(), TestCaseError> {
    match (json::parse(text), serde_json::from_str::<Value>(text)) {
        (Ok(ours), Ok(theirs)) => prop_assert!(
            same(&ours, &theirs),
            "{text:?}: {ours:?} vs serde_json {theirs:?}"
        ),
        (Err(_), Err(_)) => {}
        (ours, theirs) => prop_assert!(false, "{text:?}: ours {ours:?}, serde_json {theirs:?}"),
    }
    Ok(())
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z\"\\\\/\u{0}-\u{1f}\u{7f}é☃😀\u{2028}]{0,12}",
    ]
}

/// Floats with few significant digits, as apps mostly write them.
fn short_float() -> impl Strategy<Value = f64> {
    (any::<i32>(), 0u32..6).prop_map(|(n, k)| f64::from(n) / 10f64.powi(k as i32))
}

fn arb_value() -> impl Strategy<Value = Value> {
    let float = prop_oneof![
        short_float(),
        any::<f64>().prop_filter("finite", |f| f.is_finite())
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        float.prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_string(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A string's characters, each with how to write it (raw, short escape, `\u` lower/upper).
type DocString = Vec<(char, u8)>;

/// A valid JSON document and all the freedom its text has: whitespace, escapes chosen per
/// character, numbers in any notation, duplicate keys.
#[derive(Debug, Clone)]
enum Doc {
    Literal(&'static str),
    Number(String),
    Str(DocString),
    Array(Vec<(String, Doc)>),
    Object(Vec<(String, DocString, Doc)>),
}

fn ws() -> impl Strategy<Value = String> {
    "[ \t\n\r]{0,2}"
}

fn doc_string() -> impl Strategy<Value = DocString> {
    prop::collection::vec(
        (
            prop_oneof![
                any::<char>(),
                prop::char::range('\u{0}', '\u{7f}'),
                Just('"'),
                Just('\\')
            ],
            0u8..4,
        ),
        0..8,
    )
}

fn arb_doc() -> impl Strategy<Value = Doc> {
    let leaf = prop_oneof![
        prop_oneof![Just("true"), Just("false"), Just("null")].prop_map(Doc::Literal),
        "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?".prop_map(Doc::Number),
        "-?[1-9][0-9]{0,3}[eE]-?[0-9]{10,12}".prop_map(Doc::Number),
        doc_string().prop_map(Doc::Str),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone()), 0..5).prop_map(Doc::Array),
            prop::collection::vec(
                (
                    ws(),
                    prop_oneof![
                        doc_string(),
                        "[ab]".prop_map(|k| k.chars().map(|c| (c, 0)).collect())
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(Doc::Object),
        ]
    })
}

fn render_string(out: &mut String, chars: &[(char, u8)]) {
    out.push('"');
    for &(c, style) in chars {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        let must_escape = c < '\u{20}' || c == '"' || c == '\\';
        match (style, short) {
            (0, _) if !must_escape => out.push(c),
            (1, Some(s)) => out.push_str(s),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    if style == 3 {
                        out.push_str(&format!("\\u{unit:04X}"));
                    } else {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
    }
    out.push('"');
}

fn render(out: &mut String, doc: &Doc) {
    match doc {
        Doc::Literal(s) => out.push_str(s),
        Doc::Number(s) => out.push_str(s),
        Doc::Str(chars) => render_string(out, chars),
        Doc::Array(items) => {
            out.push('[');
            for (i, (ws, item)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                render(out, item);
                out.push_str(ws);
            }
            out.push(']');
        }
        Doc::Object(members) => {
            out.push('{');
            for (i, (ws, key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                render_string(out, key);
                out.push_str(ws);
                out.push(':');
                out.push_str(ws);
                render(out, value);
            }
            out.push('}');
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_writer_prints_what_serde_json_prints(v in arb_value()) {
        prop_assert_eq!(json::to_string(&v), serde_json::to_string(&v).unwrap());
    }

    #[test]
    fn the_object_writer_prints_what_serde_json_prints(
        text in arb_string(), n in any::<u64>(), flag in any::<bool>(), v in arb_value()
    ) {
        let mut ours = String::new();
        let mut w = json::ObjectWriter::new(&mut ours);
        w.str("text", &text);
        w.u64("n", n);
        w.opt_u64("absent", None);
        w.bool("flag", flag);
        w.null("nothing");
        w.value("value", &v);
        w.strs("list", std::slice::from_ref(&text));
        w.finish();
        let theirs = format!(
            r#"{{"text":{},"n":{n},"flag":{flag},"nothing":null,"value":{},"list":[{}]}}"#,
            serde_json::to_string(&text).unwrap(),
            serde_json::to_string(&v).unwrap(),
            serde_json::to_string(&text).unwrap(),
        );
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn written_values_parse_back_exactly(v in arb_value()) {
        let text = json::to_string(&v);
        assert_agrees(&text)?;
        let back = json::parse(&text).unwrap();
        prop_assert!(same(&back, &v), "{text}: {back:?}");
    }

    #[test]
    fn random_documents_parse_like_serde_json(doc in arb_doc(), pre in ws(), post in ws()) {
        let mut text = pre;
        render(&mut text, &doc);
        text.push_str(&post);
        assert_agrees(&text)?;
    }

    #[test]
    fn arbitrary_text_is_accepted_exactly_when_serde_json_accepts_it(
        text in prop_oneof![
            any::<String>(),
            "[\\[\\]{}\",:0-9eE.+\\- \ttfnrula\\\\/]{0,40}",
            "[\\[{\"]{0,3}\"(\\\\u[dD][89abAB][0-9a-f]{2}|\\\\u[dD][c-fC-F][0-9a-f]{2}|[a\\\\\u{0}\u{1f}])*\"[\\]}]{0,3}",
        ]
    ) {
        assert_agrees(&text)?;
    }

    #[test]
    fn damaged_documents_are_refused_like_serde_json(
        doc in arb_doc(),
        at in any::<prop::sample::Index>(),
        with in "[\\[\\]{}\",:0-9eE.\\- \\\\u]?",
    ) {
        let mut text = String::new();
        render(&mut text, &doc);
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        if !boundaries.is_empty() {
            let i = boundaries[at.index(boundaries.len())];
            let end = text[i..].chars().next().map_or(i, |c| i + c.len_utf8());
            text.replace_range(i..end, &with);
        }
        assert_agrees(&text)?;
    }
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "needs escaping")]
fn object_writer_keys_that_need_escaping_are_caught_in_debug_builds() {
    let mut out = String::new();
    json::ObjectWriter::new(&mut out).str("a\"b", "x");
}
