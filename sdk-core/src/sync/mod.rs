//! Shared documents with optimistic updates: a JSON map per channel that every client edits
//! locally at once and that converges to the server's order for everyone.
//!
//! The model (docs/protocol.md, "Documents"):
//!
//! - A document is a map of keys to JSON values at a **version** (one per accepted change) in an
//!   **epoch** (a server that lost its change log starts a new one).
//! - A change is a list of [`Op`]s applied atomically: `set`, `delete`, `increment` (counters:
//!   increments commute, so concurrent increments from many clients sum exactly) and `insert`
//!   (set only if absent: the change is rejected with `conflict` otherwise).
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
pub use document::{ChangeOrigin, Document, KeyChange};
pub(crate) use document::{Reaction, Undelivered};
pub use server::{ChangeOutcome, DocumentServer, LoggedChange, SyncReply};

use crate::errors::Quoted;
use serde_json::{Map, Number, Value};

/// Why a change cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// `conflict` (insert on an existing key) or `type_mismatch` (increment of a non-number).
    pub code: &'static str,
    /// Which key and why.
    pub message: String,
}

/// Applies `ops` to `state` atomically: either all of them or, with an error, none.
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
            Ok(Some(Value::Number(add(&base, by))))
        }
    }
}

/// Exact integer addition when both are integers and it fits, else floating point.
fn add(a: &Number, b: &Number) -> Number {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if let Some(sum) = x.checked_add(y) {
            return Number::from(sum);
        }
    }
    let sum = a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0);
    Number::from_f64(sum).unwrap_or_else(|| Number::from(0))
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
        let mut big = doc(json!({"n": i64::MAX}));
        apply_change(
            &mut big,
            &[Op::Increment {
                key: "n".into(),
                by: 1.into(),
            }],
        )
        .unwrap();
        assert!(
            big["n"].is_f64(),
            "overflow degrades to a float, never panics"
        );
    }
}
