//! Shared documents with optimistic updates: a JSON map per channel that every client edits
//! locally at once and that converges to the server's order for everyone.
//!
//! The model (docs/protocol.md, "Documents"):
//!
//! - A document is a map of keys to JSON values at a **version** (one per accepted change) in an
//!   **epoch** (a server that lost its change log starts a new one).
//! - A change is a list of [`Op`]s applied atomically: `set`, `delete`, `increment` (counters:
//!   increments commute, so concurrent increments from many clients sum exactly; an integer
//!   plus an integer is exact, and a sum outside the integers a JSON number holds here,
//!   −2^63 to 2^64−1, is rejected with `out_of_range` rather than rounded) and `insert` (set only
//!   if absent: the change is rejected with `conflict` otherwise).
//! - The server orders changes; per key, the last writer in server order wins.
//! - A client keeps the **confirmed** state (the server's, at a version) and a queue of
//!   **pending** local changes; what the app sees is confirmed + pending replayed in order, so a
//!   local change shows at once and survives remote changes arriving underneath it (rebase).
//! - An acknowledgement moves a pending change into the confirmed state at its version; a
//!   rejection removes it and the view rolls back to what is still valid; after a reconnect the
//!   client asks for the changes after its version, or gets a snapshot when the server no longer
//!   has them, and replays its pending changes on top.
//!
//! [`apply_change`] is the one definition of what a change does, used by the client for its
//! view and confirmed state and by [`DocumentServer`] (the reference server logic, also used by
//! the relay), so both sides cannot disagree.

mod document;
mod server;

pub use crate::protocol::Op;

/// How deeply a `set` or `insert` value may nest arrays and objects: a `doc_change` frame holds
/// it inside its own object, its `ops` array and the op's object, and a frame nests at most
/// [`json::MAX_DEPTH`](crate::json::MAX_DEPTH) levels (deeper, the relay refuses it as
/// `bad_frame`). A change with a deeper value is refused locally ([`crate::SyncError::TooDeep`]).
pub const MAX_VALUE_DEPTH: usize = crate::json::MAX_DEPTH - 3;
pub use document::{ChangeOrigin, Document, KeyChange, MAX_SYNC_PENDING};
pub(crate) use document::{Reaction, Undelivered};
pub use server::{ChangeOutcome, DocumentServer, LoggedChange, SyncReply};

use crate::errors::Quoted;
use serde_json::{Map, Number, Value};

/// Why a change cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// `conflict` (insert on an existing key), `type_mismatch` (increment of a non-number) or
    /// `out_of_range` (an increment whose sum is not a representable number: see [`apply_change`]).
    pub code: &'static str,
    /// Which key and why.
    pub message: String,
}

/// Applies `ops` to `state` atomically: either all of them or, with an error, none.
///
/// An `increment` of an integer by an integer is exact over every integer a JSON number holds
/// here (−2^63 to 2^64−1, serde_json's `i64` and `u64`); a sum outside that range is rejected
/// with `out_of_range`, never rounded to a float, so a counter never silently loses precision.
/// With a float on either side the sum is a float, and one that is not finite is rejected
/// with `out_of_range` too. Client and server both apply this rule, so they refuse the same
/// changes.
///
/// ```
/// use serde_json::{json, Map};
/// use tether_core::sync::{apply_change, Op};
///
/// let mut doc = Map::new();
/// apply_change(&mut doc, &[Op::Increment { key: "votes".into(), by: 2.into() }]).unwrap();
/// apply_change(&mut doc, &[Op::Increment { key: "votes".into(), by: 3.into() }]).unwrap();
/// assert_eq!(doc["votes"], json!(5));
/// let taken = [Op::Insert { key: "votes".into(), value: json!(0) }];
/// assert_eq!(apply_change(&mut doc, &taken).unwrap_err().code, "conflict");
/// assert_eq!(doc["votes"], json!(5), "a rejected change leaves no trace");
/// ```
pub fn apply_change(state: &mut Map<String, Value>, ops: &[Op]) -> Result<(), Rejection> {
    // Each op applies in place, on the state the earlier ops of this change left, and logs the
    // value it replaced; a rejection replays the log backwards, leaving no trace. Linear in the
    // ops (a staged list searched for every op's key was quadratic: ~0.5 s for the ~25,000 ops
    // a 1 MiB change holds, on the server under its lock and on every client).
    let mut undo: Vec<(&str, Option<Value>)> = Vec::with_capacity(ops.len());
    for op in ops {
        let key = op.key();
        let next = match apply_op(state.get(key), op) {
            Ok(next) => next,
            Err(rejection) => {
                for (key, before) in undo.into_iter().rev() {
                    put(state, key, before);
                }
                return Err(rejection);
            }
        };
        let before = put(state, key, next);
        undo.push((key, before));
    }
    Ok(())
}

/// Sets (`Some`) or removes (`None`) `key`, returning what it held.
fn put(state: &mut Map<String, Value>, key: &str, value: Option<Value>) -> Option<Value> {
    match value {
        Some(v) => state.insert(key.to_owned(), v),
        None => state.remove(key),
    }
}

/// The value of a key after `op`, given its value before.
fn apply_op(current: Option<&Value>, op: &Op) -> Result<Option<Value>, Rejection> {
    match op {
        Op::Set { value, .. } => Ok(Some(value.clone())),
        Op::Delete { .. } => Ok(None),
        Op::Insert { key, value } => match current {
            None => Ok(Some(value.clone())),
            Some(_) => Err(Rejection {
                code: "conflict",
                message: format!("{} already exists", Quoted(key)),
            }),
        },
        Op::Increment { key, by } => {
            let base = match current {
                None | Some(Value::Null) => Number::from(0),
                Some(Value::Number(n)) => n.clone(),
                Some(other) => {
                    return Err(Rejection {
                        code: "type_mismatch",
                        message: format!(
                            "cannot increment {}: it holds {}",
                            Quoted(key),
                            crate::json::to_string(other)
                        ),
                    })
                }
            };
            match add(&base, by) {
                Some(sum) => Ok(Some(Value::Number(sum))),
                None => Err(Rejection {
                    code: "out_of_range",
                    message: format!(
                        "incrementing {} ({base}) by {by} leaves the range of {}",
                        Quoted(key),
                        if base.is_f64() || by.is_f64() {
                            "finite numbers"
                        } else {
                            "exact integers (-2^63 to 2^64-1)"
                        }
                    ),
                }),
            }
        }
    }
}

/// `a + b`: exact when both are integers, floating point when either is a float; `None` when
/// the sum is an integer outside `i64` and `u64`, or a float that is not finite.
fn add(a: &Number, b: &Number) -> Option<Number> {
    if let (Some(x), Some(y)) = (integer(a), integer(b)) {
        // Within i128 for any two i64/u64 values.
        let sum = x + y;
        return i64::try_from(sum)
            .map(Number::from)
            .or_else(|_| u64::try_from(sum).map(Number::from))
            .ok();
    }
    Number::from_f64(a.as_f64()? + b.as_f64()?)
}

/// The value of an integer `Number` (`i64` or `u64`), or `None` for a float.
fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn ops_apply_in_order_and_atomically() {
        let mut d = doc(json!({"a": 1, "s": "text"}));
        let ok = [
            Op::Set {
                key: "b".into(),
                value: json!(true),
            },
            Op::Increment {
                key: "a".into(),
                by: 4.into(),
            },
            Op::Delete { key: "a".into() },
            Op::Insert {
                key: "a".into(),
                value: json!("again"),
            },
        ];
        apply_change(&mut d, &ok).unwrap();
        assert_eq!(d, doc(json!({"a": "again", "b": true, "s": "text"})));
        let bad = [
            Op::Set {
                key: "c".into(),
                value: json!(1),
            },
            Op::Increment {
                key: "s".into(),
                by: 1.into(),
            },
        ];
        assert_eq!(
            apply_change(&mut d, &bad).unwrap_err().code,
            "type_mismatch"
        );
        assert!(
            !d.contains_key("c"),
            "nothing of a rejected change is applied"
        );
        let before = d.clone();
        let touches_all = [
            Op::Delete { key: "a".into() },
            Op::Set {
                key: "b".into(),
                value: json!(1),
            },
            Op::Increment {
                key: "b".into(),
                by: 1.into(),
            },
            Op::Insert {
                key: "a".into(),
                value: json!(0),
            },
            Op::Insert {
                key: "b".into(),
                value: json!(0),
            },
        ];
        assert_eq!(
            apply_change(&mut d, &touches_all).unwrap_err().code,
            "conflict"
        );
        assert_eq!(
            d, before,
            "keys set, deleted and changed twice are all restored"
        );
    }

    #[test]
    fn increments_are_exact_for_integers_and_fall_back_to_floats() {
        let mut d = Map::new();
        for _ in 0..1000 {
            apply_change(
                &mut d,
                &[Op::Increment {
                    key: "n".into(),
                    by: 1.into(),
                }],
            )
            .unwrap();
        }
        assert_eq!(d["n"], json!(1000));
        let half = Number::from_f64(0.5).unwrap();
        apply_change(
            &mut d,
            &[Op::Increment {
                key: "n".into(),
                by: half,
            }],
        )
        .unwrap();
        assert_eq!(d["n"], json!(1000.5));
    }

    fn increment(d: &mut Map<String, Value>, by: impl Into<Number>) -> Result<(), Rejection> {
        apply_change(
            d,
            &[Op::Increment {
                key: "n".into(),
                by: by.into(),
            }],
        )
    }

    #[test]
    fn integer_increments_stay_exact_or_are_refused_out_of_range() {
        // `increment("n", i64::MAX)` twice used to give 1.8446744073709552e+19, a float.
        let mut d = Map::new();
        increment(&mut d, i64::MAX).unwrap();
        increment(&mut d, i64::MAX).unwrap();
        assert_eq!(
            d["n"],
            json!(18_446_744_073_709_551_614_u64),
            "exact, past i64"
        );
        increment(&mut d, 1).unwrap();
        assert_eq!(d["n"], json!(u64::MAX));
        let err = increment(&mut d, 1).unwrap_err();
        assert_eq!(err.code, "out_of_range", "{err}");
        assert_eq!(
            d["n"],
            json!(u64::MAX),
            "a refused increment leaves no trace"
        );
        increment(&mut d, -1).unwrap();
        assert_eq!(d["n"], json!(u64::MAX - 1), "and back down, exactly");
        increment(&mut d, i64::MIN).unwrap();
        assert_eq!(d["n"], json!(u64::MAX - 1 - (1_u64 << 63)));

        let mut low = doc(json!({"n": i64::MIN}));
        assert_eq!(increment(&mut low, -1).unwrap_err().code, "out_of_range");
        assert_eq!(low["n"], json!(i64::MIN));
        increment(&mut low, u64::MAX).unwrap();
        assert_eq!(low["n"], json!(i64::MAX), "i64::MIN + u64::MAX");

        // Floats: a float sum, but never an infinity (it used to become 0).
        let mut float = doc(json!({"n": 1e308}));
        let err = increment(&mut float, Number::from_f64(1e308).unwrap()).unwrap_err();
        assert_eq!(err.code, "out_of_range");
        assert_eq!(float["n"], json!(1e308));
        increment(&mut float, 1).unwrap();
        assert!(float["n"].is_f64());
    }
}
