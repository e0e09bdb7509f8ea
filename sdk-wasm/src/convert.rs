//! The JavaScript edge: options (a JSON object from the JS wrapper) into a validated
//! [`Config`], and engine events and state into JSON for the wrapper to dispatch.
//!
//! Everything crosses as JSON text through the engine's own `tether_core::json`, so the
//! module carries no second serialisation machinery (no serde-wasm-bindgen, no js-sys object
//! building per field). Times cross as integer microseconds; the wrapper turns them into
//! milliseconds.

use std::time::Duration;
use tether_core::json as text;
use tether_core::json::ObjectWriter;
use tether_core::serde_json::{Map, Value};
use tether_core::sync::{Document, KeyChange, Op};
use tether_core::{
    BackoffConfig, ClosePolicy, CloseReason, Config, DisconnectCause, Disposition, DropReason,
    EngineError, Event, HeartbeatConfig, HeartbeatMode, Jitter, OutboxConfig, OverflowPolicy,
    Payload, Protocol, RequestFailure, State, Stats, TokenPlacement,
};

/// Options the driver itself uses besides the engine config.
#[derive(Debug)]
pub(crate) struct DriverOptions {
    pub(crate) high_water: u32,
    pub(crate) low_water: u32,
    pub(crate) lifecycle: bool,
}

/// An error for JS: `code:message`, split by the wrapper into a `TetherError`.
pub(crate) fn error(code: &str, message: &str) -> wasm_bindgen::JsValue {
    let mut s = String::with_capacity(code.len() + message.len() + 1);
    s.push_str(code);
    s.push(':');
    s.push_str(message);
    s.into()
}

fn field<'a>(o: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(o, |v, k| v.get(k))
        .filter(|v| !v.is_null())
}

fn invalid(path: &[&str], what: &str) -> String {
    let mut s = path.join(".");
    s.push_str(" must be ");
    s.push_str(what);
    s
}

fn number(o: &Value, path: &[&str]) -> Result<Option<f64>, String> {
    match field(o, path) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(Some)
            .ok_or_else(|| invalid(path, "a non-negative number")),
    }
}

fn millis(o: &Value, path: &[&str]) -> Result<Option<Duration>, String> {
    match number(o, path)? {
        None => Ok(None),
        Some(ms) => Duration::try_from_secs_f64(ms / 1000.0)
            .map(Some)
            .map_err(|_| invalid(path, "a duration in milliseconds")),
    }
}

fn count(o: &Value, path: &[&str]) -> Result<Option<u64>, String> {
    match field(o, path) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(path, "a whole number")),
    }
}

fn text<'a>(o: &'a Value, path: &[&str]) -> Result<Option<&'a str>, String> {
    match field(o, path) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| invalid(path, "a string")),
    }
}

fn flag(o: &Value, path: &[&str]) -> Result<Option<bool>, String> {
    match field(o, path) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| invalid(path, "a boolean")),
    }
}

fn choice<T: Copy>(o: &Value, path: &[&str], names: &[(&str, T)]) -> Result<Option<T>, String> {
    let Some(name) = text(o, path)? else {
        return Ok(None);
    };
    match names.iter().find(|(n, _)| *n == name) {
        Some((_, v)) => Ok(Some(*v)),
        None => {
            let list: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            Err(invalid(path, &list.join(" | ")))
        }
    }
}

/// Every option the wrapper passes on, by object (`""` is the top level). A misspelt or
/// misplaced key is an `invalid_config` error, not a setting silently left at its default.
const KNOWN_OPTIONS: [(&str, &[&str]); 6] = [
    (
        "",
        &[
            "protocol",
            "backoff",
            "heartbeat",
            "outbox",
            "closePolicy",
            "hasToken",
            "tokenPlacement",
            "tokenParam",
            "connectTimeoutMs",
            "closeTimeoutMs",
            "requestTimeoutMs",
            "maxMessageBytes",
            "failRequestsOnDisconnect",
            "clientId",
            "seed",
            "subprotocols",
            "backpressure",
            "lifecycle",
        ],
    ),
    (
        "backoff",
        &[
            "initialMs",
            "maxMs",
            "factor",
            "jitter",
            "maxAttempts",
            "minUptimeMs",
        ],
    ),
    (
        "heartbeat",
        &[
            "mode",
            "intervalMs",
            "maxMissed",
            "pongTimeoutMs",
            "probeTimeoutMs",
            "anyFrameIsLiveness",
            "rawPing",
            "rawPong",
        ],
    ),
    ("outbox", &["maxMessages", "maxBytes", "overflow", "ttlMs"]),
    (
        "closePolicy",
        &[
            "codes",
            "serviceRestartWindowMs",
            "tryAgainLaterDelayMs",
            "maxServerDelayMs",
        ],
    ),
    ("backpressure", &["highWaterBytes", "lowWaterBytes"]),
];

/// Refuses a section that is not an object and a key the section does not have.
fn check_option_names(o: &Value) -> Result<(), String> {
    for (section, keys) in KNOWN_OPTIONS {
        let object = if section.is_empty() {
            Some(o)
        } else {
            field(o, &[section])
        };
        let Some(object) = object else {
            continue;
        };
        let name = if section.is_empty() {
            "options"
        } else {
            section
        };
        let map = object
            .as_object()
            .ok_or_else(|| invalid(&[name], "an object"))?;
        if let Some(unknown) = map.keys().find(|k| !keys.contains(&k.as_str())) {
            let mut s = String::from("unknown option ");
            if !section.is_empty() {
                s.push_str(section);
                s.push('.');
            }
            s.push_str(unknown);
            s.push_str(" (known: ");
            s.push_str(&keys.join(", "));
            s.push(')');
            return Err(s);
        }
    }
    Ok(())
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Builds the engine config for `url` from the wrapper's options object. The engine's
/// builder validates; this only maps names and types (and names the option at fault).
pub(crate) fn config(url: &str, options: &str) -> Result<(Config, DriverOptions), String> {
    let o = text::parse(options).map_err(|e| e.to_string())?;
    check_option_names(&o)?;
    // Browsers can neither send ping frames nor see an event stream's comment keep-alives.
    let mut b = Config::builder(url)
        .driver_can_send_ping_frames(false)
        .driver_sees_sse_comments(false);
    let protocols = [("raw", Protocol::Raw), ("tether", Protocol::Tether)];
    if let Some(p) = choice(&o, &["protocol"], &protocols)? {
        b = b.protocol(p);
    }

    let mut backoff = BackoffConfig::default();
    let k = |key| ["backoff", key];
    backoff.initial = millis(&o, &k("initialMs"))?.unwrap_or(backoff.initial);
    backoff.max = millis(&o, &k("maxMs"))?.unwrap_or(backoff.max);
    backoff.factor = number(&o, &k("factor"))?.unwrap_or(backoff.factor);
    let jitters = [
        ("none", Jitter::None),
        ("full", Jitter::Full),
        ("equal", Jitter::Equal),
        ("decorrelated", Jitter::Decorrelated),
    ];
    backoff.jitter = choice(&o, &k("jitter"), &jitters)?.unwrap_or(backoff.jitter);
    if let Some(n) = count(&o, &k("maxAttempts"))? {
        backoff.max_attempts = Some(u32::try_from(n).unwrap_or(u32::MAX));
    }
    backoff.min_uptime = millis(&o, &k("minUptimeMs"))?.unwrap_or(backoff.min_uptime);
    b = b.backoff(backoff);

    let mut hb = HeartbeatConfig::default();
    let k = |key| ["heartbeat", key];
    let modes = [
        ("auto", HeartbeatMode::Auto),
        ("app", HeartbeatMode::AppMessage),
        ("server", HeartbeatMode::ServerDriven),
        ("off", HeartbeatMode::Off),
    ];
    hb.mode = choice(&o, &k("mode"), &modes)?.unwrap_or(hb.mode);
    hb.interval = millis(&o, &k("intervalMs"))?.unwrap_or(hb.interval);
    if let Some(n) = count(&o, &k("maxMissed"))? {
        hb.max_missed = u32::try_from(n).unwrap_or(u32::MAX);
    }
    hb.pong_timeout = millis(&o, &k("pongTimeoutMs"))?.or(hb.pong_timeout);
    hb.probe_timeout = millis(&o, &k("probeTimeoutMs"))?.unwrap_or(hb.probe_timeout);
    let liveness = flag(&o, &k("anyFrameIsLiveness"))?;
    hb.any_frame_is_liveness = liveness.unwrap_or(hb.any_frame_is_liveness);
    if let Some(t) = text(&o, &k("rawPing"))? {
        hb.raw_ping = t.to_owned();
    }
    if let Some(t) = text(&o, &k("rawPong"))? {
        hb.raw_pong = t.to_owned();
    }
    b = b.heartbeat(hb);

    let mut outbox = OutboxConfig::default();
    let k = |key| ["outbox", key];
    outbox.max_messages = count(&o, &k("maxMessages"))?.map_or(outbox.max_messages, usize_of);
    outbox.max_bytes = count(&o, &k("maxBytes"))?.map_or(outbox.max_bytes, usize_of);
    let policies = [
        ("drop-oldest", OverflowPolicy::DropOldest),
        ("reject-new", OverflowPolicy::RejectNew),
    ];
    outbox.overflow = choice(&o, &k("overflow"), &policies)?.unwrap_or(outbox.overflow);
    outbox.default_ttl = millis(&o, &k("ttlMs"))?;
    b = b.outbox(outbox);

    b = b.close_policy(close_policy(&o)?);

    if flag(&o, &["hasToken"])? == Some(true) {
        // Browsers cannot set handshake headers: the token goes in the URL or in `hello`.
        let placement = match text(&o, &["tokenPlacement"])? {
            None | Some("query") => TokenPlacement::Query {
                param: text(&o, &["tokenParam"])?.unwrap_or("token").to_owned(),
            },
            Some("first-message") => TokenPlacement::FirstMessage,
            Some(_) => return Err(invalid(&["tokenPlacement"], "query | first-message")),
        };
        b = b.token(placement);
    }
    if let Some(d) = millis(&o, &["connectTimeoutMs"])? {
        b = b.connect_timeout(d);
    }
    if let Some(d) = millis(&o, &["closeTimeoutMs"])? {
        b = b.close_timeout(d);
    }
    if let Some(d) = millis(&o, &["requestTimeoutMs"])? {
        b = b.request_timeout(d);
    }
    if let Some(n) = count(&o, &["maxMessageBytes"])? {
        b = b.max_message_bytes(usize_of(n));
    }
    if let Some(f) = flag(&o, &["failRequestsOnDisconnect"])? {
        b = b.fail_requests_on_disconnect(f);
    }
    if let Some(id) = text(&o, &["clientId"])? {
        b = b.client_id(id);
    }
    if let Some(seed) = count(&o, &["seed"])? {
        b = b.seed(seed);
    }
    if let Some(list) = field(&o, &["subprotocols"]) {
        let bad = || invalid(&["subprotocols"], "an array of strings");
        for p in list.as_array().ok_or_else(bad)? {
            b = b.subprotocol(p.as_str().ok_or_else(bad)?);
        }
    }
    let config = b.build().map_err(|e| e.to_string())?;

    let high = count(&o, &["backpressure", "highWaterBytes"])?.unwrap_or(1 << 20);
    let low = count(&o, &["backpressure", "lowWaterBytes"])?.unwrap_or(high / 4);
    if low > high {
        return Err(invalid(
            &["backpressure", "lowWaterBytes"],
            "at most backpressure.highWaterBytes",
        ));
    }
    let driver = DriverOptions {
        high_water: u32::try_from(high).unwrap_or(u32::MAX),
        low_water: u32::try_from(low).unwrap_or(u32::MAX),
        lifecycle: flag(&o, &["lifecycle"])?.unwrap_or(true),
    };
    Ok((config, driver))
}

/// `closePolicy`: what close codes mean (`codes`, latest first) and the server-advice timings.
/// Browsers never see HTTP statuses, so the policy's status overrides have no JS option.
fn close_policy(o: &Value) -> Result<ClosePolicy, String> {
    let mut policy = ClosePolicy::default();
    let k = |key| ["closePolicy", key];
    if let Some(d) = millis(o, &k("serviceRestartWindowMs"))? {
        policy = policy.with_service_restart_window(d);
    }
    if let Some(d) = millis(o, &k("tryAgainLaterDelayMs"))? {
        policy = policy.with_try_again_later_delay(d);
    }
    if let Some(d) = millis(o, &k("maxServerDelayMs"))? {
        policy = policy.with_max_server_delay(d);
    }
    let path = k("codes");
    let Some(list) = field(o, &path) else {
        return Ok(policy);
    };
    let shape = "an array of {from, to?, action: 'retry' | 'reauth' | 'stop'} with codes 1000-4999";
    let list = list.as_array().ok_or_else(|| invalid(&path, shape))?;
    for rule in list {
        // A misspelt key (`too: 4599`) would silently narrow the rule to one code.
        let keys = rule.as_object().map(|m| m.keys());
        if !keys.is_some_and(|mut k| k.all(|k| ["from", "to", "action"].contains(&k.as_str()))) {
            return Err(invalid(&path, shape));
        }
        let code = |key| {
            rule.get(key)
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (1000..=4999).contains(c))
        };
        let from = code("from").ok_or_else(|| invalid(&path, shape))?;
        let to = match rule.get("to") {
            None | Some(Value::Null) => from,
            Some(_) => code("to")
                .filter(|to| *to >= from)
                .ok_or_else(|| invalid(&path, shape))?,
        };
        let action = match rule.get("action").and_then(Value::as_str) {
            Some("retry") => Disposition::Retry,
            Some("reauth") => Disposition::Reauth,
            Some("stop") => Disposition::Terminal,
            _ => return Err(invalid(&path, shape)),
        };
        policy = policy.with_code(from..=to, action);
    }
    Ok(policy)
}

/// A change's operations from the wrapper's JSON array. Whether they apply is the engine's
/// decision; this only checks their shape.
pub(crate) fn ops(list: &Value) -> Result<Vec<Op>, &'static str> {
    const SHAPES: &str = "a change is an array of {op: 'set' | 'insert', key, value}, \
        {op: 'delete', key} or {op: 'increment', key, by: number}";
    let list = list.as_array().ok_or(SHAPES)?;
    list.iter().map(|o| op(o).ok_or(SHAPES)).collect()
}

fn op(o: &Value) -> Option<Op> {
    let key = o.get("key")?.as_str()?.to_owned();
    let value = || o.get("value").cloned();
    Some(match o.get("op")?.as_str()? {
        "set" => Op::Set {
            key,
            value: value()?,
        },
        "insert" => Op::Insert {
            key,
            value: value()?,
        },
        "delete" => Op::Delete { key },
        "increment" => Op::Increment {
            key,
            by: o.get("by")?.as_number()?.clone(),
        },
        _ => return None,
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One JSON object written straight into a `String` (no `Value` built on the way).
fn object(f: impl FnOnce(&mut ObjectWriter<'_>)) -> String {
    let mut out = String::with_capacity(64);
    write_object(&mut out, f);
    out
}

fn write_object(out: &mut String, f: impl FnOnce(&mut ObjectWriter<'_>)) {
    let mut w = ObjectWriter::new(out);
    f(&mut w);
    w.finish();
}

/// `{name, attempt?, until?, reason?...}`; `until` is in `performance.now()` microseconds.
pub(crate) fn write_state(out: &mut String, s: &State) {
    write_object(out, |w| {
        w.str("name", s.name());
        match s {
            State::Connecting { attempt } => w.u64("attempt", u64::from(*attempt)),
            State::Waiting { attempt, until } => {
                w.u64("attempt", u64::from(*attempt));
                w.u64("until", until.as_micros());
            }
            State::Closed { reason } => {
                let (code, status) = match reason {
                    CloseReason::App { code } => (Some(*code), None),
                    CloseReason::Refused { code, status, .. }
                    | CloseReason::Unauthorized { code, status } => (*code, *status),
                    _ => (None, None),
                };
                w.str("reason", reason.name());
                opt_u16_or_null(w, "code", code);
                opt_u16_or_null(w, "status", status);
                w.str("message", &reason.to_string());
            }
            _ => {}
        }
    });
}

/// `null` rather than absent: the wrapper passes these fields through as they are.
fn opt_u16_or_null(w: &mut ObjectWriter<'_>, key: &'static str, v: Option<u16>) {
    match v {
        Some(v) => w.u64(key, u64::from(v)),
        None => w.null(key),
    }
}

fn write_cause(out: &mut String, c: &DisconnectCause) {
    let (code, status) = match c {
        DisconnectCause::Closed { code, .. } => (*code, None),
        DisconnectCause::Http { status } => (None, Some(*status)),
        _ => (None, None),
    };
    write_object(out, |w| {
        w.str("kind", c.name());
        opt_u16_or_null(w, "code", code);
        opt_u16_or_null(w, "status", status);
        w.str("message", &c.to_string());
    });
}

/// `[{key, value, overwroteLocal}]`; no `value` when the key was deleted.
fn write_key_changes(out: &mut String, changes: &[KeyChange]) {
    text::write_array(out, changes, |out, c| {
        write_object(out, |w| {
            w.str("key", &c.key);
            w.bool("overwroteLocal", c.overwrote_local);
            if let Some(value) = &c.value {
                w.value("value", value);
            }
        })
    });
}

/// An engine event as `(kind, JSON, binary payload)` for the wrapper; `None` for events this
/// driver does not know (the enum is non-exhaustive).
pub(crate) fn event(e: Event) -> Option<(&'static str, String, Option<Vec<u8>>)> {
    let mut bytes = None;
    let mut out = String::with_capacity(64);
    let mut w = ObjectWriter::new(&mut out);
    let kind = match e {
        Event::StateChanged { from, to } => {
            write_state(w.key("from"), &from);
            write_state(w.key("to"), &to);
            "state"
        }
        Event::ReconnectScheduled {
            attempt,
            delay,
            cause,
        } => {
            w.u64("attempt", u64::from(attempt));
            w.u64("delay", micros(delay));
            write_cause(w.key("cause"), &cause);
            "reconnecting"
        }
        Event::Message(m) => {
            w.opt_str("channel", m.channel.as_ref());
            w.opt_u64("offset", m.offset);
            match m.payload {
                Payload::Json(p) => w.value("json", &p),
                Payload::Text(t) => w.str("text", &t),
                Payload::Binary(b) => bytes = Some(b),
                _ => return None,
            }
            "message"
        }
        Event::Dropped { ids, reason } => {
            w.str("reason", reason.name());
            if let DropReason::Rejected { code } = &reason {
                w.str("code", code);
            }
            text::write_array(w.key("ids"), ids, |out, id| text::write_u64(out, id.get()));
            "dropped"
        }
        Event::Acked { id, offset } => {
            w.u64("id", id.get());
            match offset {
                Some(offset) => w.u64("offset", offset),
                None => w.null("offset"), // typed `number | null`
            }
            "acked"
        }
        Event::Replied { id, payload } => {
            w.u64("id", id.get());
            w.value("payload", &payload);
            "replied"
        }
        Event::RequestFailed { id, reason } => {
            w.u64("id", id.get());
            w.str("code", reason.code());
            w.str("message", &reason.to_string());
            if let RequestFailure::Rejected { code, .. } = &reason {
                server_code(&mut w, code);
            }
            "request_failed"
        }
        Event::Subscribed {
            channel,
            offset,
            recovered,
        } => {
            w.str("channel", &channel);
            w.u64("offset", offset);
            w.bool("recovered", recovered);
            "subscribed"
        }
        Event::Unsubscribed { channel } => {
            w.str("channel", &channel);
            "unsubscribed"
        }
        Event::Presence {
            channel,
            members,
            joined,
            left,
        } => {
            w.str("channel", &channel);
            w.strs("members", &members);
            w.strs("joined", &joined);
            w.strs("left", &left);
            "presence"
        }
        Event::Rtt { rtt } => {
            w.u64("rtt", micros(rtt));
            "rtt"
        }
        Event::DocumentChanged {
            channel,
            origin,
            changes,
        } => {
            w.str("channel", &channel);
            w.str("origin", origin.name());
            write_key_changes(w.key("changes"), &changes);
            "doc_change"
        }
        Event::ChangeRejected {
            channel,
            change,
            code,
        } => {
            w.str("channel", &channel);
            w.u64("change", change.get());
            w.str("code", &code);
            "doc_rejected"
        }
        Event::DocumentResynced { channel, version } => {
            w.str("channel", &channel);
            w.u64("version", version);
            "doc_resynced"
        }
        Event::Error(err) => {
            w.str("code", err.kind());
            w.str("message", &err.to_string());
            match &err {
                EngineError::Server { code, .. } => server_code(&mut w, code),
                EngineError::FrameTooLarge { size, max } => {
                    write_object(w.key("details"), |d| {
                        d.u64("size", *size as u64);
                        d.u64("limit", *max as u64);
                    });
                }
                _ => {}
            }
            "error"
        }
        _ => return None,
    };
    w.finish();
    Some((kind, out, bytes))
}

/// `details: {serverCode}`: the server's own error code, for the wrapper's `TetherError`.
fn server_code(w: &mut ObjectWriter<'_>, code: &str) {
    write_object(w.key("details"), |d| d.str("serverCode", code));
}

/// `{attempt, refresh}` for the wrapper's token request.
pub(crate) fn token_request(attempt: u32, refresh: bool) -> String {
    object(|w| {
        w.u64("attempt", u64::from(attempt));
        w.bool("refresh", refresh);
    })
}

/// The counters, plus the outbox's current size.
pub(crate) fn stats(s: &Stats, outbox_len: usize, outbox_bytes: usize) -> String {
    object(|w| {
        let counters = [
            ("attempts", s.attempts),
            ("opens", s.opens),
            ("reconnects", s.reconnects),
            ("messagesAccepted", s.messages_accepted),
            ("messagesSettled", s.messages_settled),
            ("framesSent", s.frames_sent),
            ("framesReceived", s.frames_received),
            ("bytesSent", s.bytes_sent),
            ("bytesReceived", s.bytes_received),
            ("resent", s.resent),
            ("droppedOverflow", s.dropped_overflow),
            ("droppedExpired", s.dropped_expired),
            ("droppedClosed", s.dropped_closed),
            ("droppedRejected", s.dropped_rejected),
            ("duplicatesDropped", s.duplicates_dropped),
            ("errors", s.errors),
            ("staleInputs", s.stale_inputs),
            ("outboxLength", outbox_len as u64),
            ("outboxBytes", outbox_bytes as u64),
        ];
        for (key, n) in counters {
            w.u64(key, n);
        }
        match s.last_rtt {
            Some(rtt) => w.u64("lastRtt", micros(rtt)),
            None => w.null("lastRtt"),
        }
    })
}

/// `{version, epoch, pending}` of a document, plus `map` when asked for.
pub(crate) fn document_info(doc: &Document, map: Option<&Map<String, Value>>) -> String {
    object(|w| {
        match doc.version() {
            Some(v) => w.u64("version", v),
            None => w.null("version"),
        }
        match doc.epoch() {
            Some(e) => w.str("epoch", e),
            None => w.null("epoch"),
        }
        w.u64("pending", doc.pending() as u64);
        if let Some(map) = map {
            text::write_map(w.key("map"), map);
        }
    })
}
