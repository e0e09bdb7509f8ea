//! A small, strict JSON parser and writer for [`serde_json::Value`], so the engine carries no
//! serde (de)serialisation machinery.
//!
//! `Value` stays the payload type of the public API; only the text conversion is done here.
//! serde's generic `Deserializer`/`Serializer` code and the derived codecs of the protocol
//! types were ~40% of the engine's wasm (docs/performance.md); this module is a small fraction
//! of that and gives the same results:
//!
//! - [`parse`] accepts exactly what `serde_json::from_str::<Value>` accepts (RFC 8259 strict:
//!   no comments, no trailing commas, no lone surrogates, no raw control characters in
//!   strings), with serde_json's nesting limit (127 arrays/objects) and its number rules:
//!   non-negative integers that fit become `u64`, negative ones `i64`, everything else (and
//!   `-0`) the `f64` nearest to the text (ties to even), as serde_json reads it with its
//!   `float_roundtrip` feature (and Rust's `str::parse`, and JavaScript's `JSON.parse`), so
//!   the same text gives the same bits, and every float the writer prints reads back as
//!   itself. (serde_json's default reading is off by a unit or two in the last place for
//!   about one float in ten of those: a value shared through a document then differed
//!   between its author, the server and everyone else, for good.)
//!   Duplicate object keys keep the last value. Any input gives a value or a [`JsonError`]
//!   with its position; it never panics (nesting is bounded, so recursion is too).
//! - [`to_string`]/[`write_value`] print compact JSON exactly as `serde_json::to_string` does:
//!   the same escapes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as
//!   `\u00XX`, nothing else), numbers through `serde_json::Number`'s own formatting, object
//!   keys in the map's order.
//!
//! The protocol codec (`crate::protocol`) decodes its envelope straight from the `Parser`,
//! field by field, without an intermediate map.
//!
//! ```
//! use tether_core::json;
//! use tether_core::serde_json::json;
//!
//! let v = json::parse(r#"{"text":"h\u00e9\n","n":[1,-2,0.5]}"#)?;
//! assert_eq!(v, json!({"text": "hé\n", "n": [1, -2, 0.5]}));
//! assert_eq!(json::to_string(&v), r#"{"n":[1,-2,0.5],"text":"hé\n"}"#);
//! assert!(json::parse("[1,]").is_err());
//! # Ok::<(), json::JsonError>(())
//! ```

use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt::Write as _;

/// How deeply arrays and objects may nest (serde_json's default limit). A protocol frame's
/// own object counts as one level.
pub const MAX_DEPTH: usize = 127;

/// Why a text is not acceptable JSON (or, for the protocol's typed decoding, not of the
/// expected shape), and where: 1-based line and column (in bytes) of the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at line {line} column {column}")]
pub struct JsonError {
    kind: ErrorKind,
    line: usize,
    column: usize,
}

impl JsonError {
    /// What is wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The 1-based line of the problem.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The 1-based column (in bytes) of the problem.
    pub fn column(&self) -> usize {
        self.column
    }
}

/// What is wrong with a JSON text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The text ended in the middle of a value.
    #[error("unexpected end of input")]
    Eof,
    /// Something other than a value where one must start.
    #[error("expected a value")]
    ExpectedValue,
    /// A misspelt `true`, `false` or `null`.
    #[error("invalid literal (expected `true`, `false` or `null`)")]
    InvalidLiteral,
    /// An object key that is not a string.
    #[error("expected a string key")]
    ExpectedKey,
    /// No `:` after an object key.
    #[error("expected `:`")]
    ExpectedColon,
    /// Neither `,` nor `]` after an array element.
    #[error("expected `,` or `]`")]
    ExpectedCommaOrBracket,
    /// Neither `,` nor `}` after an object member.
    #[error("expected `,` or `}}`")]
    ExpectedCommaOrBrace,
    /// A `,` right before `]` or `}`.
    #[error("trailing comma")]
    TrailingComma,
    /// A malformed number (leading zeros, a missing digit, …).
    #[error("invalid number")]
    InvalidNumber,
    /// A number too large for an `f64`.
    #[error("number out of range")]
    NumberOutOfRange,
    /// A backslash followed by something other than `"\/bfnrtu`.
    #[error("invalid escape")]
    InvalidEscape,
    /// `\u` not followed by four hex digits.
    #[error("invalid \\u escape")]
    InvalidUnicodeEscape,
    /// A UTF-16 surrogate escape without its other half.
    #[error("unpaired surrogate in a \\u escape")]
    LoneSurrogate,
    /// A raw control character (U+0000 to U+001F) inside a string: it must be escaped.
    #[error("control character in a string")]
    ControlCharacter,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// More text after the value.
    #[error("trailing characters")]
    TrailingCharacters,
    /// Typed decoding: a value that is not the container expected (e.g. a frame that is
    /// not an object).
    #[error("expected {0}")]
    Expected(&'static str),
    /// Typed decoding: a field of the wrong type.
    #[error("invalid `{field}`: expected {expected}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// Typed decoding: a field given twice.
    #[error("duplicate field `{0}`")]
    DuplicateField(&'static str),
    /// Typed decoding: a required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
}

/// Parses one JSON text into a [`Value`]. Whitespace may surround it; nothing else may follow.
pub fn parse(text: &str) -> Result<Value, JsonError> {
    let mut p = Parser::new(text);
    let value = p.value()?;
    p.finish()?;
    Ok(value)
}

/// Prints `value` as compact JSON, exactly as `serde_json::to_string` would.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Appends `value` to `out` as compact JSON (see [`to_string`]).
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_array(out, items, write_value),
        Value::Object(map) => write_map(out, map),
    }
}

/// Appends an object (keys in the map's order).
pub fn write_map(out: &mut String, map: &Map<String, Value>) {
    out.push('{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

/// Appends a number: `Number`'s `Display` is serde_json's own printing (itoa for integers,
/// the shortest round-trip form for floats, e.g. `1.0`, `1e+20`… as serde_json writes them).
pub(crate) fn write_number(out: &mut String, n: &Number) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{n}");
}

/// Appends an unsigned integer.
pub fn write_u64(out: &mut String, n: u64) {
    let _ = write!(out, "{n}");
}

/// Appends a JSON array, each item written by `write`.
pub fn write_array<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut String, T),
) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item);
    }
    out.push(']');
}

/// Appends an array of strings.
pub fn write_strings(out: &mut String, items: &[String]) {
    write_array(out, items, |out, s| write_str(out, s));
}

/// Appends `s` as a JSON string literal, escaped as serde_json escapes it.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` and `start` sit next to ASCII bytes, so both are char boundaries.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes one JSON object member by member, straight into a `String`, for callers that
/// produce JSON from their own types without building a [`Value`] first (the protocol
/// codec, the browser driver's events). Keys are field names (literals, written as they are);
/// string values are escaped like every string here.
///
/// ```
/// use tether_core::json::ObjectWriter;
///
/// let mut out = String::new();
/// let mut w = ObjectWriter::new(&mut out);
/// w.str("name", "waiting");
/// w.u64("attempt", 3);
/// w.opt_u64("code", None); // omitted
/// ObjectWriter::new(w.key("cause")).finish(); // a nested object: {}
/// w.finish();
/// assert_eq!(out, r#"{"name":"waiting","attempt":3,"cause":{}}"#);
/// ```
#[derive(Debug)]
pub struct ObjectWriter<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    /// Starts an object at the end of `out`.
    pub fn new(out: &'o mut String) -> Self {
        ObjectWriter { out, first: true }
    }

    /// Starts the member `key` and returns the text to append its value to (any JSON: a
    /// nested [`ObjectWriter`], [`write_value`], …).
    ///
    /// Keys are field names written as they are, without escaping (this is the protocol
    /// codec's hot path): they must contain no `"`, `\\` or control character, which debug
    /// builds check. Write a map with arbitrary keys with [`write_map`].
    pub fn key(&mut self, key: &'static str) -> &mut String {
        debug_assert!(
            key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'),
            "ObjectWriter key {key:?} needs escaping"
        );
        self.out.push_str(if self.first { "{\"" } else { ",\"" });
        self.first = false;
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    /// A string member.
    pub fn str(&mut self, key: &'static str, value: &str) {
        write_str(self.key(key), value);
    }

    /// An unsigned integer member.
    pub fn u64(&mut self, key: &'static str, value: u64) {
        write_u64(self.key(key), value);
    }

    /// A boolean member.
    pub fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key).push_str(if value { "true" } else { "false" });
    }

    /// A `null` member.
    pub fn null(&mut self, key: &'static str) {
        self.key(key).push_str("null");
    }

    /// Any JSON value as a member.
    pub fn value(&mut self, key: &'static str, value: &Value) {
        write_value(self.key(key), value);
    }

    /// An array of strings as a member.
    pub fn strs(&mut self, key: &'static str, items: &[String]) {
        write_strings(self.key(key), items);
    }

    /// A string member, omitted when `None`.
    pub fn opt_str(&mut self, key: &'static str, value: Option<&String>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    /// An unsigned integer member, omitted when `None`.
    pub fn opt_u64(&mut self, key: &'static str, value: Option<u64>) {
        if let Some(value) = value {
            self.u64(key, value);
        }
    }

    /// A boolean member, omitted when `None`.
    pub fn opt_bool(&mut self, key: &'static str, value: Option<bool>) {
        if let Some(value) = value {
            self.bool(key, value);
        }
    }

    /// An array of strings, omitted when `None`.
    pub fn opt_strings(&mut self, key: &'static str, value: Option<&Vec<String>>) {
        if let Some(items) = value {
            self.strs(key, items);
        }
    }

    /// Closes the object.
    pub fn finish(self) {
        if self.first {
            self.out.push('{');
        }
        self.out.push('}');
    }
}

/// A cursor over one JSON text. [`Parser::value`] reads any value; [`Parser::object`] and
/// [`Parser::array`] let typed decoders (the protocol's) read containers member by member.
#[derive(Debug)]
pub(crate) struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// Containers that may still be opened (counts down from [`MAX_DEPTH`]).
    depth_left: usize,
}

type Members<'p, 'a> = dyn FnMut(&mut Parser<'a>, Cow<'a, str>) -> Result<(), JsonError> + 'p;
type Elements<'p, 'a> = dyn FnMut(&mut Parser<'a>) -> Result<(), JsonError> + 'p;

impl<'a> Parser<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Parser {
            text,
            pos: 0,
            depth_left: MAX_DEPTH,
        }
    }

    /// An error of `kind` at the current position.
    pub(crate) fn error(&self, kind: ErrorKind) -> JsonError {
        self.error_at(self.pos, kind)
    }

    /// An error of `kind` at byte `at` (from [`Parser::mark`]).
    #[cold]
    pub(crate) fn error_at(&self, at: usize, kind: ErrorKind) -> JsonError {
        let before = self.text.as_bytes().get(..at).unwrap_or_default();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        JsonError {
            kind,
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
            column: 1 + before.len() - line_start,
        }
    }

    fn rest(&self) -> &'a [u8] {
        self.text.as_bytes().get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Skips whitespace and returns the next byte (not consumed).
    pub(crate) fn peek_token(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
        self.peek()
    }

    /// The position of the next token, for [`Parser::error_at`].
    pub(crate) fn mark(&mut self) -> usize {
        self.peek_token();
        self.pos
    }

    /// Checks that only whitespace is left.
    pub(crate) fn finish(&mut self) -> Result<(), JsonError> {
        match self.peek_token() {
            None => Ok(()),
            Some(_) => Err(self.error(ErrorKind::TrailingCharacters)),
        }
    }

    /// Reads any value.
    pub(crate) fn value(&mut self) -> Result<Value, JsonError> {
        match self.peek_token() {
            None => Err(self.error(ErrorKind::Eof)),
            Some(b'{') => {
                let mut map = Map::new();
                self.object(&mut |p, key| {
                    let value = p.value()?;
                    map.insert(key.into_owned(), value);
                    Ok(())
                })?;
                Ok(Value::Object(map))
            }
            Some(b'[') => {
                let mut items = Vec::new();
                self.array(&mut |p| {
                    items.push(p.value()?);
                    Ok(())
                })?;
                Ok(Value::Array(items))
            }
            Some(b'"') => Ok(Value::String(self.string()?.into_owned())),
            Some(b'-' | b'0'..=b'9') => Ok(Value::Number(self.number()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(_) => Err(self.error(ErrorKind::ExpectedValue)),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, JsonError> {
        if self.rest().starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error(ErrorKind::InvalidLiteral))
        }
    }

    /// Opens a container, counting its depth.
    fn open(&mut self) -> Result<(), JsonError> {
        if self.depth_left == 0 {
            return Err(self.error(ErrorKind::TooDeep));
        }
        self.depth_left -= 1;
        self.pos += 1;
        Ok(())
    }

    /// Reads an object, calling `member` with each key; `member` must read the value.
    pub(crate) fn object(&mut self, member: &mut Members<'_, 'a>) -> Result<(), JsonError> {
        match self.peek_token() {
            Some(b'{') => self.open()?,
            None => return Err(self.error(ErrorKind::Eof)),
            Some(_) => return Err(self.error(ErrorKind::Expected("an object"))),
        }
        if self.peek_token() == Some(b'}') {
            self.pos += 1;
            self.depth_left += 1;
            return Ok(());
        }
        loop {
            match self.peek_token() {
                Some(b'"') => {}
                None => return Err(self.error(ErrorKind::Eof)),
                Some(_) => return Err(self.error(ErrorKind::ExpectedKey)),
            }
            let key = self.string()?;
            match self.peek_token() {
                Some(b':') => self.pos += 1,
                None => return Err(self.error(ErrorKind::Eof)),
                Some(_) => return Err(self.error(ErrorKind::ExpectedColon)),
            }
            member(self, key)?;
            match self.peek_token() {
                Some(b',') => {
                    self.pos += 1;
                    if self.peek_token() == Some(b'}') {
                        return Err(self.error(ErrorKind::TrailingComma));
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    self.depth_left += 1;
                    return Ok(());
                }
                None => return Err(self.error(ErrorKind::Eof)),
                Some(_) => return Err(self.error(ErrorKind::ExpectedCommaOrBrace)),
            }
        }
    }

    /// Reads an array, calling `element` for each element; `element` must read it.
    pub(crate) fn array(&mut self, element: &mut Elements<'_, 'a>) -> Result<(), JsonError> {
        match self.peek_token() {
            Some(b'[') => self.open()?,
            None => return Err(self.error(ErrorKind::Eof)),
            Some(_) => return Err(self.error(ErrorKind::Expected("an array"))),
        }
        if self.peek_token() == Some(b']') {
            self.pos += 1;
            self.depth_left += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek_token() {
                Some(b',') => {
                    self.pos += 1;
                    if self.peek_token() == Some(b']') {
                        return Err(self.error(ErrorKind::TrailingComma));
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    self.depth_left += 1;
                    return Ok(());
                }
                None => return Err(self.error(ErrorKind::Eof)),
                Some(_) => return Err(self.error(ErrorKind::ExpectedCommaOrBracket)),
            }
        }
    }

    /// Reads a string literal (the next token must be `"`), borrowed from the input when it
    /// holds no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.pos += 1; // the opening quote
        let text = self.text;
        let bytes = text.as_bytes();
        let mut start = self.pos;
        let mut owned: Option<String> = None;
        loop {
            let Some(&b) = bytes.get(self.pos) else {
                return Err(self.error(ErrorKind::Eof));
            };
            match b {
                b'"' => {
                    // Quotes and backslashes are ASCII: both ends are char boundaries.
                    let run = &text[start..self.pos];
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(run),
                        Some(mut s) => {
                            s.push_str(run);
                            Cow::Owned(s)
                        }
                    });
                }
                b'\\' => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&text[start..self.pos]);
                    self.pos += 1;
                    s.push(self.escape()?);
                    start = self.pos;
                }
                0..=0x1f => return Err(self.error(ErrorKind::ControlCharacter)),
                _ => self.pos += 1,
            }
        }
    }

    /// Reads the escape after a backslash (`pos` is just after it), up to its last byte.
    fn escape(&mut self) -> Result<char, JsonError> {
        let Some(b) = self.peek() else {
            return Err(self.error(ErrorKind::Eof));
        };
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                self.pos += 1;
                return self.unicode_escape();
            }
            _ => return Err(self.error(ErrorKind::InvalidEscape)),
        };
        self.pos += 1;
        Ok(c)
    }

    /// Reads the hex digits of a `\u` escape (and of its low surrogate, if it opens a pair);
    /// `pos` is just after `\u` and ends after the last digit read.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let high = self.hex4()?;
        let code = match high {
            0xdc00..=0xdfff => return Err(self.error(ErrorKind::LoneSurrogate)),
            0xd800..=0xdbff => {
                if !self.rest().starts_with(b"\\u") {
                    return Err(self.error(ErrorKind::LoneSurrogate));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&low) {
                    return Err(self.error(ErrorKind::LoneSurrogate));
                }
                0x1_0000 + ((u32::from(high) - 0xd800) << 10 | (u32::from(low) - 0xdc00))
            }
            _ => u32::from(high),
        };
        char::from_u32(code).ok_or_else(|| self.error(ErrorKind::LoneSurrogate))
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let mut n: u16 = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                None => return Err(self.error(ErrorKind::Eof)),
                Some(b) => char::from(b).to_digit(16),
            };
            let Some(digit) = digit else {
                return Err(self.error(ErrorKind::InvalidUnicodeEscape));
            };
            n = n << 4 | digit as u16;
            self.pos += 1;
        }
        Ok(n)
    }

    /// Reads a number (see the module docs): integers as serde_json reads them, floats
    /// correctly rounded, so every float the writer prints reads back as itself.
    fn number(&mut self) -> Result<Number, JsonError> {
        let positive = self.peek() != Some(b'-');
        if !positive {
            self.pos += 1;
        }
        let digits_start = self.pos;
        let mut significand: u64 = 0;
        // Decimal exponent of the digits kept in `significand`.
        let mut exponent: i32 = 0;
        // Integer digits beyond u64 were dropped (counted in `exponent`): a float.
        let mut long = false;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error(ErrorKind::InvalidNumber));
                }
            }
            Some(b'1'..=b'9') => {
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                    let digit = u64::from(c - b'0');
                    if long || overflows(significand, digit) {
                        long = true;
                        exponent += 1;
                    } else {
                        significand = significand * 10 + digit;
                    }
                }
            }
            None => return Err(self.error(ErrorKind::Eof)),
            Some(_) => return Err(self.error(ErrorKind::InvalidNumber)),
        }
        let fraction = self.peek() == Some(b'.');
        // Fraction digits, all of them (for the exact value), and whether some did not fit
        // in `significand` (which then only approximates it).
        let mut fraction_digits: i64 = 0;
        let mut dropping = false;
        if fraction {
            self.pos += 1;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                self.pos += 1;
                fraction_digits += 1;
                let digit = u64::from(c - b'0');
                if dropping || overflows(significand, digit) {
                    dropping = true;
                } else {
                    significand = significand * 10 + digit;
                    exponent -= 1;
                }
            }
            if fraction_digits == 0 {
                return Err(self.error(match self.peek() {
                    None => ErrorKind::Eof,
                    Some(_) => ErrorKind::InvalidNumber,
                }));
            }
        }
        let digits = self
            .text
            .as_bytes()
            .get(digits_start..self.pos)
            .unwrap_or_default();
        // The exponent as written (`e…`).
        let mut written: i64 = 0;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            let positive_exp = match self.peek() {
                Some(b'+') => {
                    self.pos += 1;
                    true
                }
                Some(b'-') => {
                    self.pos += 1;
                    false
                }
                _ => true,
            };
            let mut exp: i32 = match self.peek() {
                Some(c @ b'0'..=b'9') => i32::from(c - b'0'),
                None => return Err(self.error(ErrorKind::Eof)),
                Some(_) => return Err(self.error(ErrorKind::InvalidNumber)),
            };
            self.pos += 1;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                self.pos += 1;
                let digit = i32::from(c - b'0');
                if exp >= i32::MAX / 10 && (exp > i32::MAX / 10 || digit > i32::MAX % 10) {
                    // An exponent beyond i32: zero, or out of range.
                    if significand != 0 && positive_exp {
                        return Err(self.error(ErrorKind::NumberOutOfRange));
                    }
                    while let Some(b'0'..=b'9') = self.peek() {
                        self.pos += 1;
                    }
                    return self.float(if positive { 0.0 } else { -0.0 });
                }
                exp = exp * 10 + digit;
            }
            written = if positive_exp {
                i64::from(exp)
            } else {
                -i64::from(exp)
            };
            exponent = if positive_exp {
                exponent.saturating_add(exp)
            } else {
                exponent.saturating_sub(exp)
            };
        } else if !fraction && !long {
            if positive {
                return Ok(Number::from(significand));
            }
            // `-0` and integers below i64::MIN are floats, as in serde_json.
            let negated = (significand as i64).wrapping_neg();
            return if negated < 0 {
                Ok(Number::from(negated))
            } else {
                // One rounding, of the exact integer: the nearest float.
                self.float(-(significand as f64))
            };
        }
        let approx = self.f64_from_parts(significand, exponent)?;
        // Exact operands and one rounding (Clinger's fast path): the nearest float already.
        let exact = !long && !dropping && significand <= 1 << 53 && exponent.unsigned_abs() <= 22;
        let f = if exact || significand == 0 {
            approx
        } else {
            let exact_significand = (!long && !dropping).then_some(significand);
            nearest_float(digits, written - fraction_digits, exact_significand, approx)
                .ok_or_else(|| self.error(ErrorKind::NumberOutOfRange))?
        };
        self.float(if positive { f } else { -f })
    }

    fn float(&self, f: f64) -> Result<Number, JsonError> {
        // Always finite here: infinities were reported as out of range already.
        Number::from_f64(f).ok_or_else(|| self.error(ErrorKind::NumberOutOfRange))
    }

    /// `significand × 10^exponent` to within a few units in the last place (serde_json's
    /// default conversion): what [`nearest_float`] starts from. Infinite when the product
    /// rounds past `f64::MAX`, which the exact value may not.
    fn f64_from_parts(&self, significand: u64, mut exponent: i32) -> Result<f64, JsonError> {
        let mut f = significand as f64;
        loop {
            match POW10.get(exponent.unsigned_abs() as usize) {
                Some(&pow) => {
                    if exponent >= 0 {
                        f *= pow;
                    } else {
                        f /= pow;
                    }
                    return Ok(f);
                }
                None => {
                    if f == 0.0 {
                        return Ok(f);
                    }
                    if exponent >= 0 {
                        return Err(self.error(ErrorKind::NumberOutOfRange));
                    }
                    f /= 1e308;
                    exponent += 308;
                }
            }
        }
    }
}

/// Significant digits read exactly; those after them only tell whether the value is above
/// them. 768 are enough to tell any decimal from every point halfway between two floats.
const MAX_EXACT_DIGITS: usize = 800;

/// The float nearest to the decimal `digits × 10^exp10` (ties to even), from `approx`, a
/// non-negative float a few units in the last place from it (infinite: past `f64::MAX`);
/// `None` if it rounds past `f64::MAX`. `digits` is the number's text before its exponent,
/// without the sign, a `.` included (skipped), with at least one digit that is not 0;
/// `significand` is their value when it fits in a `u64`.
///
/// Compares the decimal, exactly, with the points halfway between `approx` and its
/// neighbours, and steps towards it: what Clinger's AlgorithmR and the "bigcomp" step of
/// strtod do. The default conversion alone is off by one or two units for about one float
/// in ten of those the writer prints (17 significant digits), so a float read back was not
/// the one written: a client's value and the server's copy of it differed for good.
fn nearest_float(digits: &[u8], exp10: i64, significand: Option<u64>, approx: f64) -> Option<f64> {
    // Below 10^-330 (half the smallest float is 2.5e-324): zero, as `approx` says.
    let significant = digits
        .iter()
        .skip_while(|&&b| b == b'0' || b == b'.')
        .filter(|&&b| b != b'.')
        .count();
    if significant as i64 + exp10 < -330 {
        return Some(0.0);
    }
    // Most numbers compare in 128 bits; the others with the big integers, made once.
    let mut exact: Option<Decimal> = None;
    let mut versus_halfway_above = |f: f64| {
        significand
            .and_then(|s| versus_halfway_small(s, exp10, f))
            .unwrap_or_else(|| {
                exact
                    .get_or_insert_with(|| Decimal::new(digits, exp10))
                    .versus_halfway_above(f)
            })
    };
    let mut f = if approx.is_infinite() {
        f64::MAX
    } else {
        approx
    };
    // A few steps at most (the approximation is that close); bounded all the same.
    for _ in 0..64 {
        let odd = f.to_bits() & 1 == 1;
        let up = versus_halfway_above(f);
        if up.is_gt() || (up.is_eq() && odd) {
            if f == f64::MAX {
                return None;
            }
            f = f64::from_bits(f.to_bits() + 1);
            continue;
        }
        if f > 0.0 {
            let below = f64::from_bits(f.to_bits() - 1);
            let down = versus_halfway_above(below);
            if down.is_lt() || (down.is_eq() && odd) {
                f = below;
                continue;
            }
        }
        break;
    }
    Some(f)
}

/// `f` (finite, not negative) as `m × 2^k`, `m` an integer below 2^53.
fn parts(f: f64) -> (u64, i64) {
    let bits = f.to_bits();
    match bits >> 52 {
        0 => (bits, -1074),
        e => ((bits & ((1 << 52) - 1)) | 1 << 52, e as i64 - 1075),
    }
}

/// How `s × 10^exp10` compares with the point halfway between `f` and the next float up,
/// `(2m + 1) × 2^(k − 1)`, if both sides fit in 128 bits.
fn versus_halfway_small(s: u64, exp10: i64, f: f64) -> Option<std::cmp::Ordering> {
    let (m, k) = parts(f);
    let pow5 = 5u128.checked_pow(u32::try_from(exp10.unsigned_abs()).ok()?)?;
    let (mut left, mut right) = (u128::from(s), u128::from(2 * m + 1));
    if exp10 >= 0 {
        left = left.checked_mul(pow5)?;
    } else {
        right = right.checked_mul(pow5)?;
    }
    let shl = |x: u128, n: u64| (u64::from(x.leading_zeros()) >= n).then(|| x << n);
    let shift = exp10 - (k - 1);
    if shift >= 0 {
        left = shl(left, shift.unsigned_abs())?;
    } else {
        right = shl(right, shift.unsigned_abs())?;
    }
    Some(left.cmp(&right))
}

/// A decimal `digits × 10^exp10` as big integers, for comparisons with floats:
/// `digits × 5^exp10` when `exp10` is positive, else `5^-exp10` beside it.
struct Decimal {
    scaled: Big,
    pow5: Big,
    exp10: i64,
}

impl Decimal {
    fn new(digits: &[u8], exp10: i64) -> Decimal {
        // The significant digits, exactly: the first MAX_EXACT_DIGITS, then one more 1 if any
        // later one is not 0 (the value lies strictly between what was read and the next
        // number of as many digits, and no halfway point lies there either).
        let mut value = Big::default();
        let (mut chunk, mut chunk_len, mut kept) = (0u64, 0u32, 0usize);
        let (mut exp10, mut sticky) = (exp10, false);
        for &b in digits {
            if b == b'.' || (kept == 0 && b == b'0') {
                continue;
            }
            if kept == MAX_EXACT_DIGITS {
                exp10 += 1;
                sticky |= b != b'0';
                continue;
            }
            kept += 1;
            chunk = chunk * 10 + u64::from(b - b'0');
            chunk_len += 1;
            if chunk_len == 19 {
                value.mul_add(10u64.pow(19), chunk);
                (chunk, chunk_len) = (0, 0);
            }
        }
        value.mul_add(10u64.pow(chunk_len), chunk);
        if sticky {
            value.mul_add(10, 1);
            exp10 -= 1;
        }
        // digits × 10^exp10 = digits × 5^exp10 × 2^exp10: the powers of 5 go to one side or
        // the other once, the powers of 2 per comparison.
        let mut scaled = value;
        let mut pow5 = Big::from(1);
        if exp10 >= 0 {
            scaled.mul_pow5(exp10.unsigned_abs());
        } else {
            pow5.mul_pow5(exp10.unsigned_abs());
        }
        Decimal {
            scaled,
            pow5,
            exp10,
        }
    }

    /// How the decimal compares with the point halfway between `f` and the next float up.
    fn versus_halfway_above(&self, f: f64) -> std::cmp::Ordering {
        let (m, k) = parts(f);
        // Halfway: (2m + 1) × 2^(k - 1).
        let (mut left, mut right) = (self.scaled.clone(), self.pow5.clone());
        right.mul_add(2 * m + 1, 0);
        let shift = self.exp10 - (k - 1);
        if shift >= 0 {
            left.shl(shift.unsigned_abs());
        } else {
            right.shl(shift.unsigned_abs());
        }
        left.cmp(&right)
    }
}

/// An unsigned integer of any size, for [`nearest_float`]: little-endian 32-bit limbs.
#[derive(Debug, Clone, Default)]
struct Big(Vec<u32>);

impl From<u64> for Big {
    fn from(n: u64) -> Big {
        let mut big = Big::default();
        big.mul_add(1, n);
        big
    }
}

impl Big {
    /// `self × m + a`.
    fn mul_add(&mut self, m: u64, a: u64) {
        let mut carry = u128::from(a);
        for limb in &mut self.0 {
            let x = u128::from(*limb) * u128::from(m) + carry;
            *limb = x as u32;
            carry = x >> 32;
        }
        while carry > 0 {
            self.0.push(carry as u32);
            carry >>= 32;
        }
    }

    /// `self × 5^n`.
    fn mul_pow5(&mut self, mut n: u64) {
        // 5^27 is the largest power of 5 below 2^63.
        while n > 0 {
            let step = n.min(27);
            self.mul_add(5u64.pow(step as u32), 0);
            n -= step;
        }
    }

    /// `self × 2^n`.
    fn shl(&mut self, n: u64) {
        let (limbs, bits) = ((n / 32) as usize, (n % 32) as u32);
        if bits > 0 {
            self.mul_add(1 << bits, 0);
        }
        self.0.splice(0..0, std::iter::repeat_n(0, limbs));
    }

    fn cmp(&self, other: &Big) -> std::cmp::Ordering {
        let significant = |b: &Big| b.0.len() - b.0.iter().rev().take_while(|&&l| l == 0).count();
        let (a, b) = (significant(self), significant(other));
        a.cmp(&b)
            .then_with(|| self.0[..a].iter().rev().cmp(other.0[..b].iter().rev()))
    }
}

/// Whether `significand * 10 + digit` exceeds `u64::MAX`.
fn overflows(significand: u64, digit: u64) -> bool {
    significand >= u64::MAX / 10 && (significand > u64::MAX / 10 || digit > u64::MAX % 10)
}

#[rustfmt::skip]
static POW10: [f64; 309] = [
    1e000, 1e001, 1e002, 1e003, 1e004, 1e005, 1e006, 1e007, 1e008, 1e009,
    1e010, 1e011, 1e012, 1e013, 1e014, 1e015, 1e016, 1e017, 1e018, 1e019,
    1e020, 1e021, 1e022, 1e023, 1e024, 1e025, 1e026, 1e027, 1e028, 1e029,
    1e030, 1e031, 1e032, 1e033, 1e034, 1e035, 1e036, 1e037, 1e038, 1e039,
    1e040, 1e041, 1e042, 1e043, 1e044, 1e045, 1e046, 1e047, 1e048, 1e049,
    1e050, 1e051, 1e052, 1e053, 1e054, 1e055, 1e056, 1e057, 1e058, 1e059,
    1e060, 1e061, 1e062, 1e063, 1e064, 1e065, 1e066, 1e067, 1e068, 1e069,
    1e070, 1e071, 1e072, 1e073, 1e074, 1e075, 1e076, 1e077, 1e078, 1e079,
    1e080, 1e081, 1e082, 1e083, 1e084, 1e085, 1e086, 1e087, 1e088, 1e089,
    1e090, 1e091, 1e092, 1e093, 1e094, 1e095, 1e096, 1e097, 1e098, 1e099,
    1e100, 1e101, 1e102, 1e103, 1e104, 1e105, 1e106, 1e107, 1e108, 1e109,
    1e110, 1e111, 1e112, 1e113, 1e114, 1e115, 1e116, 1e117, 1e118, 1e119,
    1e120, 1e121, 1e122, 1e123, 1e124, 1e125, 1e126, 1e127, 1e128, 1e129,
    1e130, 1e131, 1e132, 1e133, 1e134, 1e135, 1e136, 1e137, 1e138, 1e139,
    1e140, 1e141, 1e142, 1e143, 1e144, 1e145, 1e146, 1e147, 1e148, 1e149,
    1e150, 1e151, 1e152, 1e153, 1e154, 1e155, 1e156, 1e157, 1e158, 1e159,
    1e160, 1e161, 1e162, 1e163, 1e164, 1e165, 1e166, 1e167, 1e168, 1e169,
    1e170, 1e171, 1e172, 1e173, 1e174, 1e175, 1e176, 1e177, 1e178, 1e179,
    1e180, 1e181, 1e182, 1e183, 1e184, 1e185, 1e186, 1e187, 1e188, 1e189,
    1e190, 1e191, 1e192, 1e193, 1e194, 1e195, 1e196, 1e197, 1e198, 1e199,
    1e200, 1e201, 1e202, 1e203, 1e204, 1e205, 1e206, 1e207, 1e208, 1e209,
    1e210, 1e211, 1e212, 1e213, 1e214, 1e215, 1e216, 1e217, 1e218, 1e219,
    1e220, 1e221, 1e222, 1e223, 1e224, 1e225, 1e226, 1e227, 1e228, 1e229,
    1e230, 1e231, 1e232, 1e233, 1e234, 1e235, 1e236, 1e237, 1e238, 1e239,
    1e240, 1e241, 1e242, 1e243, 1e244, 1e245, 1e246, 1e247, 1e248, 1e249,
    1e250, 1e251, 1e252, 1e253, 1e254, 1e255, 1e256, 1e257, 1e258, 1e259,
    1e260, 1e261, 1e262, 1e263, 1e264, 1e265, 1e266, 1e267, 1e268, 1e269,
    1e270, 1e271, 1e272, 1e273, 1e274, 1e275, 1e276, 1e277, 1e278, 1e279,
    1e280, 1e281, 1e282, 1e283, 1e284, 1e285, 1e286, 1e287, 1e288, 1e289,
    1e290, 1e291, 1e292, 1e293, 1e294, 1e295, 1e296, 1e297, 1e298, 1e299,
    1e300, 1e301, 1e302, 1e303, 1e304, 1e305, 1e306, 1e307, 1e308,
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Equality that tells `0.0` from `-0.0` and compares floats bit for bit.
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => match (x.as_f64(), x.is_f64(), y.is_f64()) {
                (Some(fx), true, true) => y.as_f64().is_some_and(|fy| fx.to_bits() == fy.to_bits()),
                _ => x == y,
            },
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

    /// Parses `text` with both parsers: same value, or both refuse it.
    fn agrees(text: &str) -> Result<Value, JsonError> {
        let ours = parse(text);
        let theirs = serde_json::from_str::<Value>(text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert!(same(a, b), "{text:?}: {a:?} vs serde_json {b:?}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{text:?}: ours {ours:?}, serde_json {theirs:?}"),
        }
        ours
    }

    fn kind(text: &str) -> ErrorKind {
        agrees(text).expect_err(text).kind
    }

    #[test]
    fn scalars_and_containers() {
        assert_eq!(agrees("null").unwrap(), Value::Null);
        assert_eq!(agrees(" true ").unwrap(), json!(true));
        assert_eq!(agrees("\t\r\nfalse\n").unwrap(), json!(false));
        assert_eq!(agrees("[]").unwrap(), json!([]));
        assert_eq!(agrees("{}").unwrap(), json!({}));
        assert_eq!(
            agrees(r#" { "a" : [ 1 , { "b" : null } ] , "c" : "d" } "#).unwrap(),
            json!({"a": [1, {"b": null}], "c": "d"})
        );
        assert_eq!(
            agrees(r#"{"k":1,"k":2}"#).unwrap(),
            json!({"k": 2}),
            "last duplicate wins"
        );
    }

    #[test]
    fn escapes_are_read_and_written_like_serde_json() {
        assert_eq!(
            agrees(r#""\"\\\/\b\f\n\r\t""#).unwrap(),
            json!("\"\\/\u{8}\u{c}\n\r\t")
        );
        assert_eq!(
            agrees(r#""a\u0000b\u001F\u007f""#).unwrap(),
            json!("a\0b\u{1f}\u{7f}")
        );
        let all_ascii: String = (0u8..0x80).map(char::from).collect();
        let v = Value::String(all_ascii);
        let written = to_string(&v);
        assert_eq!(written, serde_json::to_string(&v).unwrap());
        assert!(written.contains(r"\u0000") && written.contains(r"\u001f"));
        assert!(written.contains(r"\b\t\n") && written.contains(r#"\""#));
        assert!(
            written.contains("/") && !written.contains(r"\/"),
            "solidus not escaped"
        );
        assert!(same(&parse(&written).unwrap(), &v));
        assert_eq!(kind(r#""\x""#), ErrorKind::InvalidEscape);
        assert_eq!(kind(r#""\"#), ErrorKind::Eof);
        assert_eq!(kind("\"a\nb\""), ErrorKind::ControlCharacter);
        assert_eq!(kind("\"a\tb\""), ErrorKind::ControlCharacter);
        assert_eq!(kind(r#""abc"#), ErrorKind::Eof);
    }

    #[test]
    fn unicode_and_surrogate_pairs() {
        assert_eq!(
            agrees(r#""h\u00e9 \u00E9 é ☃ 😀""#).unwrap(),
            json!("hé é é ☃ 😀")
        );
        assert_eq!(agrees(r#""\ud83d\ude00""#).unwrap(), json!("😀"));
        assert_eq!(agrees(r#""\uD834\uDD1E!""#).unwrap(), json!("𝄞!"));
        assert_eq!(
            agrees(r#""\uffff\u0800""#).unwrap(),
            json!("\u{ffff}\u{800}")
        );
        for lone in [
            r#""\ud83d""#,
            r#""\ud83dx""#,
            r#""\ud83d\n""#,
            r#""\ud83d\u0041""#,
            r#""\ud83d\ud83d""#,
            r#""\ude00""#,
            r#""\udfff\ud800""#,
        ] {
            assert_eq!(kind(lone), ErrorKind::LoneSurrogate, "{lone}");
        }
        assert_eq!(kind(r#""\u12""#), ErrorKind::InvalidUnicodeEscape);
        assert_eq!(kind(r#""\u12g4""#), ErrorKind::InvalidUnicodeEscape);
        assert_eq!(kind(r#""\u12"#), ErrorKind::Eof);
        assert_eq!(kind(r#""\ud83d\u"#), ErrorKind::Eof);
        // Non-ASCII is written as is, never escaped.
        let v = json!({"é": "😀\u{2028}"});
        assert_eq!(to_string(&v), "{\"é\":\"😀\u{2028}\"}");
        assert_eq!(to_string(&v), serde_json::to_string(&v).unwrap());
    }

    #[test]
    fn integers_at_the_edges() {
        let max = agrees("18446744073709551615").unwrap();
        assert_eq!(max.as_u64(), Some(u64::MAX));
        let min = agrees("-9223372036854775808").unwrap();
        assert_eq!(min.as_i64(), Some(i64::MIN));
        assert_eq!(agrees("0").unwrap().as_u64(), Some(0));
        assert_eq!(agrees("-1").unwrap().as_i64(), Some(-1));
        // Beyond u64 / i64, and `-0`, numbers are floats (as in serde_json).
        for text in [
            "18446744073709551616",
            "-9223372036854775809",
            "-0",
            "123456789012345678901234567890",
            "-123456789012345678901234567890.5e-3",
            "18446744073709551616.5",
            "18446744073709551619.5",
        ] {
            assert!(agrees(text).unwrap().is_f64(), "{text}");
        }
        assert_eq!(to_string(&agrees("-0").unwrap()), "-0.0");
        assert_eq!(to_string(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(to_string(&json!(i64::MIN)), "-9223372036854775808");
    }

    #[test]
    fn floats_parse_to_the_nearest_float_like_serde_json() {
        for text in [
            "0.1",
            "-1.5",
            "1e3",
            "1E+3",
            "1e-3",
            "2.5e-7",
            "0.0",
            "-0.0",
            "1.7976931348623157e308",
            "2.2250738585072014e-308",
            "5e-324",
            "4.9406564584124654e-324",
            "1e-400",
            "-1e-400",
            "0.1234567890123456789012345678901234567890",
            "3.141592653589793238462643383279",
            "1.00000000000000011102230246251565404236316680908203125",
            "9007199254740993",
            "9007199254740993.0",
            "1e-99999999999",
            "0e99999999999",
            "-0e-99999999999",
            "1234567890123456789012e-10",
            // Digits that no longer fit in the u64 significand still count.
            "0.184467440737095516191",
            "1844674407370955161.91",
            "18446744073709551619.1",
            "184467440737095516191",
            "-184467440737095516191.5",
            "-18446744073709551619.15e2",
            "0.000000000000000000000000000000000000000000001e300",
        ] {
            agrees(text).unwrap();
        }
        for text in [
            "1e309",
            "-1e309",
            "1e99999999999",
            "2e308",
            "1797693134862315808e290",
        ] {
            assert_eq!(kind(text), ErrorKind::NumberOutOfRange, "{text}");
        }
        for text in [
            "01", "-01", "1.", "1.e5", ".5", "-", "-a", "+1", "1e", "1e+", "1ex", "0x1",
        ] {
            agrees(text).unwrap_err();
        }
        assert_eq!(kind("01"), ErrorKind::InvalidNumber);
        assert_eq!(kind("1.x"), ErrorKind::InvalidNumber);
        assert_eq!(kind("1."), ErrorKind::Eof);
        assert_eq!(kind("-"), ErrorKind::Eof);
    }

    /// The float nearest to the text, as Rust reads it: the cases the approximation got
    /// wrong (a unit or two off), ties, the edges of the range, and more digits than are
    /// read exactly.
    #[test]
    fn floats_are_the_nearest_to_their_text() {
        let long = format!("0.{}1e-300", "0".repeat(900));
        let halfway_and_more = format!(
            "1.00000000000000011102230246251565404236316680908203125{}1",
            "0".repeat(900)
        );
        for text in [
            "0.9268864328605197",
            "0.41015236758081597",
            "2.692203715717087e-151",
            "-5.0111910144109277e+138",
            "1.00000000000000011102230246251565404236316680908203125",
            "1.00000000000000033306690738754696212708950042724609375",
            "1.7976931348623158e308",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "2.2250738585072011e-308",
            "184467440737.9551615",
            "9007199254740993.0",
            &long,
            &halfway_and_more,
        ] {
            let expected: f64 = text.parse().unwrap();
            let ours = agrees(text).unwrap();
            assert_eq!(
                ours.as_f64().map(f64::to_bits),
                Some(expected.to_bits()),
                "{text}"
            );
        }
        // Every float reads back as itself.
        let mut rng = crate::Prng::seed_from_u64(5);
        for _ in 0..20_000 {
            let f = f64::from_bits(rng.next_u64());
            let Some(n) = Number::from_f64(f) else {
                continue;
            };
            let back = parse(&to_string(&Value::Number(n))).unwrap();
            assert_eq!(back.as_f64().map(f64::to_bits), Some(f.to_bits()), "{f:e}");
        }
    }

    #[test]
    fn floats_are_written_like_serde_json() {
        for f in [
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1e20,
            1e21,
            1e-7,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1.0 / 3.0,
        ] {
            let v = json!(f);
            assert_eq!(to_string(&v), serde_json::to_string(&v).unwrap(), "{f}");
        }
        assert_eq!(to_string(&json!(1.0)), "1.0");
        assert_eq!(
            to_string(&json!(1e20)),
            serde_json::to_string(&json!(1e20)).unwrap()
        );
    }

    #[test]
    fn nesting_is_limited_like_serde_json() {
        let nested = |n: usize, open: &str, close: &str| open.repeat(n) + &close.repeat(n);
        agrees(&nested(MAX_DEPTH, "[", "]")).unwrap();
        assert_eq!(kind(&nested(MAX_DEPTH + 1, "[", "]")), ErrorKind::TooDeep);
        agrees(&(r#"{"a":"#.repeat(MAX_DEPTH) + "1" + &"}".repeat(MAX_DEPTH))).unwrap();
        assert_eq!(
            kind(&(r#"{"a":"#.repeat(MAX_DEPTH + 1) + "1" + &"}".repeat(MAX_DEPTH + 1))),
            ErrorKind::TooDeep
        );
        // Siblings do not add up: depth is released when a container closes.
        agrees(&format!(
            "[{}]",
            vec![nested(MAX_DEPTH - 1, "[", "]"); 3].join(",")
        ))
        .unwrap();
        // Far too deep, or never closed: an error, not a stack overflow.
        assert_eq!(kind(&"[".repeat(1_000_000)), ErrorKind::TooDeep);
        assert_eq!(kind(&"{\"\":".repeat(1_000_000)), ErrorKind::TooDeep);
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        let cases: &[(&str, ErrorKind)] = &[
            ("", ErrorKind::Eof),
            ("   ", ErrorKind::Eof),
            ("[", ErrorKind::Eof),
            ("[1", ErrorKind::Eof),
            ("[1,", ErrorKind::Eof),
            ("{", ErrorKind::Eof),
            (r#"{"a""#, ErrorKind::Eof),
            (r#"{"a":"#, ErrorKind::Eof),
            (r#"{"a":1"#, ErrorKind::Eof),
            ("{not json", ErrorKind::ExpectedKey),
            ("{1:2}", ErrorKind::ExpectedKey),
            (r#"{"a" 1}"#, ErrorKind::ExpectedColon),
            (r#"{"a":1 "b":2}"#, ErrorKind::ExpectedCommaOrBrace),
            ("[1 2]", ErrorKind::ExpectedCommaOrBracket),
            ("[1,]", ErrorKind::TrailingComma),
            (r#"{"a":1,}"#, ErrorKind::TrailingComma),
            ("[,1]", ErrorKind::ExpectedValue),
            ("]", ErrorKind::ExpectedValue),
            ("'a'", ErrorKind::ExpectedValue),
            ("nul", ErrorKind::InvalidLiteral),
            ("tru", ErrorKind::InvalidLiteral),
            ("trUe", ErrorKind::InvalidLiteral),
            ("NaN", ErrorKind::ExpectedValue),
            ("Infinity", ErrorKind::ExpectedValue),
            ("1 2", ErrorKind::TrailingCharacters),
            ("{}}", ErrorKind::TrailingCharacters),
            ("null x", ErrorKind::TrailingCharacters),
            ("[1]/* c */", ErrorKind::TrailingCharacters),
            ("\u{feff}1", ErrorKind::ExpectedValue),
        ];
        for (text, want) in cases {
            assert_eq!(&kind(text), want, "{text:?}");
        }
        let e = parse("{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!((e.line(), e.column()), (2, 8));
        assert_eq!(
            e.to_string(),
            "invalid literal (expected `true`, `false` or `null`) at line 2 column 8"
        );
    }

    #[test]
    fn every_prefix_and_every_byte_change_of_a_document_is_total() {
        let doc = r#"{"v":1,"type":"message","payload":{"a":[1,-2.5e3,true,null,"x\u00e9\ud83d\ude00\n"]},"n":18446744073709551615}"#;
        agrees(doc).unwrap();
        for end in 0..doc.len() {
            if let Some(prefix) = doc.get(..end) {
                let _ = agrees(prefix);
            }
        }
        let replacements = [
            "", "\"", "\\", "{", "}", "[", "]", ",", ":", "0", "-", "e", ".", " ", "\u{1}", "é",
        ];
        for (i, _) in doc.char_indices() {
            for r in replacements {
                let mut text = doc.to_owned();
                text.replace_range(i..i + 1, r);
                let _ = agrees(&text);
            }
        }
    }

    #[test]
    fn the_writer_matches_serde_json() {
        let v = json!({
            "z": [1, -1, 1.5, "s", null, true, false, [], {}],
            "a": {"nested": {"deep": [u64::MAX, i64::MIN, 1e300]}},
            "ctl": "\u{0}\u{1}\u{1f}\u{7f}\"\\/",
            "": ""
        });
        assert_eq!(to_string(&v), serde_json::to_string(&v).unwrap());
        assert_eq!(parse(&to_string(&v)).unwrap(), v);
    }
}
