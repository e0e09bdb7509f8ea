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
use tether_core::protocol::SSE_POSITION_EVENT;
use tether_core::serde_json::Value;
use tether_core::{
    BackoffConfig, ClosePolicy, CloseReason, Config, ConfigBuilder, DisconnectCause, Disposition,
    DropReason, Engine, EngineError, Event, HeartbeatConfig, HeartbeatMode, Jitter, OutboxConfig,
    OverflowPolicy, Payload, Protocol, RequestFailure, SendError, State, TokenPlacement,
    TransportId, TransportKind,
};

/// Options the driver itself uses besides the engine config.
#[derive(Debug)]
pub(crate) struct DriverOptions {
    pub(crate) high_water: u32,
    pub(crate) low_water: u32,
    pub(crate) lifecycle: bool,
    pub(crate) sse: SseOptions,
}

/// How an event stream's `EventSource` is made.
#[derive(Debug)]
pub(crate) struct SseOptions {
    /// The event types to listen for: `sseEvents` and `message` (unnamed events).
    pub(crate) events: Vec<String>,
    /// `withCredentials`: the page's cookies go with a cross-origin request too.
    pub(crate) with_credentials: bool,
}

/// An error for JS: `code:message`, split by the wrapper into a `TetherError`.
pub(crate) fn error(code: &str, message: &str) -> wasm_bindgen::JsValue {
    let mut s = String::with_capacity(code.len() + message.len() + 1);
    s.push_str(code);
    s.push(':');
    s.push_str(message);
    s.into()
}

/// An error with details for JS: JSON text `{code, message, details}`, which the wrapper tells
/// from `code:message` by its first character (no code starts with `{`) and throws as a
/// `TetherError` with those `details`.
pub(crate) fn error_with_details(
    code: &str,
    message: &str,
    details: impl FnOnce(&mut ObjectWriter<'_>),
) -> wasm_bindgen::JsValue {
    object(|w| {
        w.str("code", code);
        w.str("message", message);
        write_object(w.key("details"), details);
    })
    .into()
}

/// A refused send as the wrapper's `TetherError`; the code is the engine's own. `too_large`
/// carries `details: {size, limit, setting}`: the size, the limit's value, and the setting
/// whose limit it is, as `invalid_config` names it (`max_message_bytes`, `outbox.max_bytes`).
pub(crate) fn send_error(e: &SendError) -> wasm_bindgen::JsValue {
    match e {
        SendError::TooLarge { size, max, limit } => {
            error_with_details(e.code(), &e.to_string(), |d| {
                d.u64("size", *size as u64);
                d.u64("limit", *max as u64);
                d.str("setting", limit.field());
            })
        }
        _ => error(e.code(), &e.to_string()),
    }
}

/// `section.key` (just `key` at the top level, where `section` is `""`).
fn option_name(section: &str, key: &str) -> String {
    let mut s = String::from(section);
    if !section.is_empty() {
        s.push('.');
    }
    s.push_str(key);
    s
}

/// `section.key must be what` (`key must be what` at the top level).
pub(crate) fn invalid(section: &str, key: &str, what: &str) -> String {
    let mut s = option_name(section, key);
    s.push_str(" must be ");
    s.push_str(what);
    s
}

/// What [`millis`] accepts, for the error naming an option or argument it refused.
pub(crate) const MILLIS: &str = "a non-negative number of milliseconds";

/// Milliseconds from JS (an option or an argument) as a duration. `None` for NaN, negative,
/// infinite or absurdly large values, which must be refused rather than read as "no limit".
pub(crate) fn millis(ms: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(ms / 1000.0).ok()
}

/// Reads the options object. A value of the wrong type is remembered (the first one only) and
/// read as absent, so every read is a plain `Option` and [`config`] checks once, before
/// building, instead of propagating an error from each of its ~40 reads.
///
/// Every key looked up is recorded, so the options the driver knows are exactly the ones it
/// reads: once everything is read, [`Reader::finish`] refuses a key that nothing looked up (a
/// misspelt or misplaced option) rather than leave a setting silently at its default. So
/// every option is read unconditionally, even when another makes it irrelevant.
struct Reader<'a> {
    options: &'a Value,
    /// `(section, key)` of every lookup, in order (each option is read once); the section is
    /// `""` at the top level.
    looked_up: Vec<(&'static str, &'static str)>,
    error: Option<String>,
}

impl<'a> Reader<'a> {
    fn new(options: &'a Value) -> Self {
        Reader {
            options,
            looked_up: Vec::new(),
            error: None,
        }
    }

    /// Records `section.key must be what` unless an earlier option already failed.
    fn fail(&mut self, section: &str, key: &str, what: &str) {
        if self.error.is_none() {
            self.error = Some(invalid(section, key, what));
        }
    }

    /// The value at `section.key`; `null` counts as absent. Records the key as known.
    fn field(&mut self, section: &'static str, key: &'static str) -> Option<&'a Value> {
        self.looked_up.push((section, key));
        let object = if section.is_empty() {
            self.options
        } else {
            self.options.get(section)?
        };
        object.get(key).filter(|v| !v.is_null())
    }

    /// The value at `section.key` read with `read`; a value it refuses fails as `what`.
    fn typed<T>(
        &mut self,
        section: &'static str,
        key: &'static str,
        what: &str,
        read: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Option<T> {
        let value = self.field(section, key)?;
        let typed = read(value);
        if typed.is_none() {
            self.fail(section, key, what);
        }
        typed
    }

    fn number(&mut self, section: &'static str, key: &'static str) -> Option<f64> {
        self.typed(section, key, "a non-negative number", |v| {
            v.as_f64().filter(|n| n.is_finite() && *n >= 0.0)
        })
    }

    fn millis(&mut self, section: &'static str, key: &'static str) -> Option<Duration> {
        self.typed(section, key, MILLIS, |v| v.as_f64().and_then(millis))
    }

    fn count(&mut self, section: &'static str, key: &'static str) -> Option<u64> {
        self.typed(section, key, "a whole number", Value::as_u64)
    }

    fn text(&mut self, section: &'static str, key: &'static str) -> Option<&'a str> {
        self.typed(section, key, "a string", Value::as_str)
    }

    fn flag(&mut self, section: &'static str, key: &'static str) -> Option<bool> {
        self.typed(section, key, "a boolean", Value::as_bool)
    }

    /// The value named at `section.key`, from `table`'s `(name, value)` pairs. Generic only
    /// in taking the value out: finding the name, and the error for an unknown one, are
    /// [`Reader::choice_index`]'s, compiled once for every enum-like option.
    fn choice<T: Copy>(
        &mut self,
        section: &'static str,
        key: &'static str,
        table: &[(&'static str, T)],
    ) -> Option<T> {
        let i = self.choice_index(section, key, &|i| table.get(i).map(|&(name, _)| name))?;
        table.get(i).map(|&(_, value)| value)
    }

    /// Which of the names `name_at(0)`, `name_at(1)`… (until `None`) is at `section.key`;
    /// another name fails as `section.key must be a | b | c`.
    fn choice_index(
        &mut self,
        section: &'static str,
        key: &'static str,
        name_at: &dyn Fn(usize) -> Option<&'static str>,
    ) -> Option<usize> {
        let name = self.text(section, key)?;
        let found = (0..).map_while(name_at).position(|n| n == name);
        if found.is_none() {
            let mut names = String::new();
            for n in (0..).map_while(name_at) {
                if !names.is_empty() {
                    names.push_str(" | ");
                }
                names.push_str(n);
            }
            self.fail(section, key, &names);
        }
        found
    }

    /// Once every option is read: the first problem with the options. A key that nothing
    /// looked up comes first (as when the names were checked before reading), then the first
    /// value of the wrong type.
    fn finish(&mut self) -> Result<(), String> {
        self.check_keys("", self.options)?;
        self.error.take().map_or(Ok(()), Err)
    }

    /// Refuses `object` (the options when `section` is `""`, else that section) if it is not
    /// an object, or has a key that was never looked up; checks its sections too.
    fn check_keys(&self, section: &'static str, object: &Value) -> Result<(), String> {
        let name = if section.is_empty() {
            "options"
        } else {
            section
        };
        let map = object
            .as_object()
            .ok_or_else(|| invalid("", name, "an object"))?;
        for (key, value) in map {
            match self.section_named(section, key) {
                Some(inner) if !value.is_null() => self.check_keys(inner, value)?,
                Some(_) => {}
                None if self.looked_up.contains(&(section, key.as_str())) => {}
                None => return Err(self.unknown(section, key)),
            }
        }
        Ok(())
    }

    /// `key` of the top level (`section` is `""`) as a section some lookup went into.
    fn section_named(&self, section: &str, key: &str) -> Option<&'static str> {
        if !section.is_empty() {
            return None; // sections are one level deep
        }
        let sections = self.looked_up.iter().map(|&(s, _)| s);
        sections.filter(|s| !s.is_empty()).find(|&s| s == key)
    }

    /// `unknown option section.key (known: …)`, the known names in the order they are read.
    /// The constructor's options only (`invalid_config`); a call's options are checked in
    /// tether.js (`known`, `invalid_argument`) in the same words: keep the two in step.
    fn unknown(&self, section: &str, key: &str) -> String {
        let mut known: Vec<&str> = Vec::new();
        for &(s, k) in &self.looked_up {
            let name = match (section.is_empty(), s.is_empty()) {
                (true, true) => k,
                (true, false) => s, // a section is a key of the top level
                (false, _) if s == section => k,
                (false, _) => continue,
            };
            if !known.contains(&name) {
                known.push(name);
            }
        }
        let mut s = String::from("unknown option ");
        s.push_str(&option_name(section, key));
        s.push_str(" (known: ");
        s.push_str(&known.join(", "));
        s.push(')');
        s
    }
}

// The enum-like options: each name with its value.
const PROTOCOLS: &[(&str, Protocol)] = &[("raw", Protocol::Raw), ("tether", Protocol::Tether)];
const JITTERS: &[(&str, Jitter)] = &[
    ("none", Jitter::None),
    ("full", Jitter::Full),
    ("equal", Jitter::Equal),
    ("decorrelated", Jitter::Decorrelated),
];
const HEARTBEAT_MODES: &[(&str, HeartbeatMode)] = &[
    ("auto", HeartbeatMode::Auto),
    ("app", HeartbeatMode::AppMessage),
    ("server", HeartbeatMode::ServerDriven),
    ("off", HeartbeatMode::Off),
];
const OVERFLOW_POLICIES: &[(&str, OverflowPolicy)] = &[
    ("drop-oldest", OverflowPolicy::DropOldest),
    ("reject-new", OverflowPolicy::RejectNew),
];
/// `tokenPlacement`: whether the token goes in the first message (else in the URL).
const TOKEN_IN_FIRST_MESSAGE: &[(&str, bool)] = &[("query", false), ("first-message", true)];

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn u32_of(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Builds the engine config for `url` from the wrapper's options object. The engine's
/// builder validates; this only maps names and types (and names the option at fault).
/// `has_token`: the app gave a token provider (a function, which the options text cannot hold).
pub(crate) fn config(
    url: &str,
    options: &str,
    has_token: bool,
) -> Result<(Config, DriverOptions), String> {
    let o = text::parse(options).map_err(|e| e.to_string())?;
    let mut r = Reader::new(&o);
    let builder = engine_options(&mut r, url, has_token);
    let mut driver = driver_options(&mut r, url);
    r.finish()?;
    // A flush hands over at most the high-water mark (plus one message) before the driver
    // checks `bufferedAmount`: an outbox queued offline does not all land in the browser's
    // buffer when the socket opens.
    let batch = (driver.high_water as usize).max(1);
    let config = builder
        .write_batch_bytes(batch)
        .build()
        .map_err(|e| e.to_string())?;
    // A Tether server's event stream says where it starts in a named event (see
    // `SSE_POSITION_EVENT`), which `EventSource` gives only to a listener for its name.
    if config.protocol() == Protocol::Tether {
        driver.sse.events.push(SSE_POSITION_EVENT.to_owned());
    }
    Ok((config, driver))
}

/// The engine's settings; [`Config`]'s builder validates them.
fn engine_options(r: &mut Reader<'_>, url: &str, has_token: bool) -> ConfigBuilder {
    // Browsers can neither send ping frames nor see the server's (they answer them
    // themselves), nor an event stream's comment keep-alives.
    let mut b = Config::builder(url)
        .driver_can_send_ping_frames(false)
        .driver_sees_ping_frames(false)
        .driver_sees_sse_comments(false)
        // From `bufferedAmount`: see `Inner::note_passed_on`.
        .driver_reports_progress(true);
    if let Some(p) = r.choice("", "protocol", PROTOCOLS) {
        b = b.protocol(p);
    }
    b = b.backoff(backoff(r));
    b = b.heartbeat(heartbeat(r));
    b = b.outbox(outbox(r));
    b = b.close_policy(close_policy(r));

    // Read, and so checked, with or without a token provider: a bad value is an error
    // either way, not ignored until the day a provider is added.
    let in_first_message = r.choice("", "tokenPlacement", TOKEN_IN_FIRST_MESSAGE);
    let param = r.text("", "tokenParam");
    if in_first_message == Some(true) && param.is_some() {
        // The query parameter's name, for a token that goes in no query.
        r.fail(
            "",
            "tokenParam",
            "left out with tokenPlacement 'first-message'",
        );
    }
    if has_token {
        // Browsers cannot set handshake headers: the token goes in the URL or in `hello`.
        b = b.token(match in_first_message {
            Some(true) => TokenPlacement::FirstMessage,
            _ => TokenPlacement::Query {
                param: param.unwrap_or("token").to_owned(),
            },
        });
    }
    if let Some(d) = r.millis("", "connectTimeoutMs") {
        b = b.connect_timeout(d);
    }
    if let Some(d) = r.millis("", "closeTimeoutMs") {
        b = b.close_timeout(d);
    }
    if let Some(d) = r.millis("", "requestTimeoutMs") {
        b = b.request_timeout(d);
    }
    if let Some(n) = r.count("", "maxMessageBytes") {
        b = b.max_message_bytes(usize_of(n));
    }
    if let Some(f) = r.flag("", "failRequestsOnDisconnect") {
        b = b.fail_requests_on_disconnect(f);
    }
    if let Some(f) = r.flag("", "restartStreams") {
        b = b.restart_streams(f);
    }
    if let Some(id) = r.text("", "clientId") {
        b = b.client_id(id);
    }
    if let Some(seed) = r.count("", "seed") {
        b = b.seed(seed);
    }
    for p in &strings(r, "subprotocols") {
        b = b.subprotocol(p.as_str());
    }
    if let Some(id) = r.text("", "lastEventId") {
        b = b.last_event_id(id);
    }
    b
}

fn backoff(r: &mut Reader<'_>) -> BackoffConfig {
    let mut backoff = BackoffConfig::default();
    let s = "backoff";
    backoff.initial = r.millis(s, "initialMs").unwrap_or(backoff.initial);
    backoff.max = r.millis(s, "maxMs").unwrap_or(backoff.max);
    backoff.factor = r.number(s, "factor").unwrap_or(backoff.factor);
    backoff.jitter = r.choice(s, "jitter", JITTERS).unwrap_or(backoff.jitter);
    if let Some(n) = r.count(s, "maxAttempts") {
        backoff.max_attempts = Some(u32_of(n));
    }
    backoff.min_uptime = r.millis(s, "minUptimeMs").unwrap_or(backoff.min_uptime);
    backoff
}

fn heartbeat(r: &mut Reader<'_>) -> HeartbeatConfig {
    let mut hb = HeartbeatConfig::default();
    let s = "heartbeat";
    hb.mode = r.choice(s, "mode", HEARTBEAT_MODES).unwrap_or(hb.mode);
    hb.interval = r.millis(s, "intervalMs").unwrap_or(hb.interval);
    hb.max_missed = r.count(s, "maxMissed").map_or(hb.max_missed, u32_of);
    hb.pong_timeout = r.millis(s, "pongTimeoutMs").or(hb.pong_timeout);
    hb.probe_timeout = r.millis(s, "probeTimeoutMs").unwrap_or(hb.probe_timeout);
    let liveness = r.flag(s, "anyFrameIsLiveness");
    hb.any_frame_is_liveness = liveness.unwrap_or(hb.any_frame_is_liveness);
    if let Some(t) = r.text(s, "rawPing") {
        hb.raw_ping = t.to_owned();
    }
    if let Some(t) = r.text(s, "rawPong") {
        hb.raw_pong = t.to_owned();
    }
    hb
}

fn outbox(r: &mut Reader<'_>) -> OutboxConfig {
    let mut outbox = OutboxConfig::default();
    let s = "outbox";
    outbox.max_messages = r
        .count(s, "maxMessages")
        .map_or(outbox.max_messages, usize_of);
    outbox.max_bytes = r.count(s, "maxBytes").map_or(outbox.max_bytes, usize_of);
    outbox.overflow = r
        .choice(s, "overflow", OVERFLOW_POLICIES)
        .unwrap_or(outbox.overflow);
    outbox.default_ttl = r.millis(s, "ttlMs");
    outbox
}

/// The top-level option `key`: an array of strings (none when absent or refused).
fn strings(r: &mut Reader<'_>, key: &'static str) -> Vec<String> {
    let mut names = Vec::new();
    let Some(value) = r.field("", key) else {
        return names;
    };
    let list = value.as_array().map_or(&[][..], Vec::as_slice);
    for name in list {
        if let Some(name) = name.as_str() {
            names.push(name.to_owned());
        }
    }
    if !value.is_array() || names.len() < list.len() {
        r.fail("", key, "an array of strings");
    }
    names
}

/// The driver's own options (read before [`Reader::finish`], so that they count as known).
fn driver_options(r: &mut Reader<'_>, url: &str) -> DriverOptions {
    // Options for one transport would do nothing on the other, which would look as if they
    // worked: refused there. (A URL of neither kind is the engine's to refuse.)
    let transport = TransportKind::for_url(url).ok();
    let ws_url = transport == Some(TransportKind::WebSocket);
    let s = "backpressure";
    let given_high = r.count(s, "highWaterBytes");
    let given_low = r.count(s, "lowWaterBytes");
    if transport == Some(TransportKind::Sse) && (given_high.is_some() || given_low.is_some()) {
        r.fail(
            "",
            s,
            "left out for an http(s) URL (an event stream sends nothing)",
        );
    }
    let high = given_high.unwrap_or(1 << 20);
    let low = given_low.unwrap_or(high / 4);
    if low > high {
        // Writing resumes at the low mark: above the high one, once paused it never would.
        r.fail(s, "lowWaterBytes", "at most backpressure.highWaterBytes");
    }
    let lifecycle = r.flag("", "lifecycle").unwrap_or(true);
    let mut sse_events = strings(r, "sseEvents");
    if ws_url && !sse_events.is_empty() {
        r.fail(
            "",
            "sseEvents",
            "left out for a ws(s) URL (only an event stream has it)",
        );
    }
    // `open` and `error` are EventSource's own events, not messages: listening for them as
    // messages would read a plain `Event` as a `MessageEvent`.
    if sse_events
        .iter()
        .any(|n| n.is_empty() || n == "open" || n == "error")
    {
        r.fail(
            "",
            "sseEvents",
            "event names other than \"\", open and error",
        );
    }
    sse_events.push("message".to_owned());
    let with_credentials = r.flag("", "withCredentials").unwrap_or(false);
    // A WebSocket's handshake carries the page's cookies for its host whatever the page's
    // origin.
    if with_credentials && ws_url {
        r.fail(
            "",
            "withCredentials",
            "left out for a ws(s) URL (only an event stream has it)",
        );
    }
    DriverOptions {
        high_water: u32_of(high),
        low_water: u32_of(low),
        lifecycle,
        sse: SseOptions {
            events: sse_events,
            with_credentials,
        },
    }
}

/// `closePolicy`: what close codes mean (`codes`, a later rule taking precedence over an earlier
/// one, as `ClosePolicy::with_code` does) and the server-advice timings.
/// Browsers never see HTTP statuses, so the policy's status overrides have no JS option.
fn close_policy(r: &mut Reader<'_>) -> ClosePolicy {
    let mut policy = ClosePolicy::default();
    let s = "closePolicy";
    if let Some(d) = r.millis(s, "serviceRestartWindowMs") {
        policy = policy.with_service_restart_window(d);
    }
    if let Some(d) = r.millis(s, "tryAgainLaterDelayMs") {
        policy = policy.with_try_again_later_delay(d);
    }
    if let Some(d) = r.millis(s, "maxServerDelayMs") {
        policy = policy.with_max_server_delay(d);
    }
    let Some(list) = r.field(s, "codes") else {
        return policy;
    };
    with_code_rules(policy, list).unwrap_or_else(|| {
        let shape =
            "an array of {from, to?, action: 'retry' | 'reauth' | 'stop'} with codes 1000-4999";
        r.fail(s, "codes", shape);
        ClosePolicy::default() // unused: the options are refused
    })
}

/// `policy` with the rules of `closePolicy.codes`, or `None` if any rule is malformed.
fn with_code_rules(mut policy: ClosePolicy, list: &Value) -> Option<ClosePolicy> {
    for rule in list.as_array()? {
        // A misspelt key (`too: 4599`) would silently narrow the rule to one code.
        let mut keys = rule.as_object()?.keys();
        if !keys.all(|k| ["from", "to", "action"].contains(&k.as_str())) {
            return None;
        }
        // The shape only: which ranges are valid is the engine's rule (`ClosePolicy`).
        let code = |key| {
            rule.get(key)
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
        };
        let from = code("from")?;
        let to = match rule.get("to") {
            None | Some(Value::Null) => from,
            Some(_) => code("to")?,
        };
        let action = match rule.get("action").and_then(Value::as_str)? {
            "retry" => Disposition::Retry,
            "reauth" => Disposition::Reauth,
            "stop" => Disposition::Terminal,
            _ => return None,
        };
        policy = policy.with_code(from..=to, action);
    }
    Some(policy)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One JSON object written straight into a `String` (no `Value` built on the way).
pub(crate) fn object(f: impl FnOnce(&mut ObjectWriter<'_>)) -> String {
    let mut out = String::with_capacity(64);
    write_object(&mut out, f);
    out
}

pub(crate) fn write_object(out: &mut String, f: impl FnOnce(&mut ObjectWriter<'_>)) {
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

/// An engine event as `(kind, JSON, binary payload)` for the wrapper; `None` for events this
/// driver does not know (the enum is non-exhaustive).
pub(crate) fn event(mut e: Event) -> Option<(&'static str, String, Option<Vec<u8>>)> {
    // Binary payloads travel apart from the JSON (moved out; nothing else is).
    let bytes = match &mut e {
        Event::Message(m) => match &mut m.payload {
            Payload::Binary(b) => Some(std::mem::take(b)),
            _ => None,
        },
        _ => None,
    };
    let mut out = String::with_capacity(64);
    let mut w = ObjectWriter::new(&mut out);
    // Borrowed, so the event is dropped once at the end rather than field by field per arm.
    let kind = match &e {
        Event::StateChanged { from, to } => {
            write_state(w.key("from"), from);
            write_state(w.key("to"), to);
            "state"
        }
        Event::ReconnectScheduled {
            attempt,
            delay,
            cause,
        } => {
            w.u64("attempt", u64::from(*attempt));
            w.u64("delay", micros(*delay));
            write_cause(w.key("cause"), cause);
            "reconnecting"
        }
        Event::Message(m) => {
            w.opt_str("channel", m.channel.as_ref());
            w.opt_u64("offset", m.offset);
            w.opt_str("event", m.event.as_ref());
            w.opt_str("lastEventId", m.last_event_id.as_ref());
            match &m.payload {
                Payload::Json(p) => w.value("json", p),
                Payload::Text(t) => w.str("text", t),
                Payload::Binary(_) => {}
                _ => return None,
            }
            "message"
        }
        Event::Dropped { ids, reason } => {
            w.str("reason", reason.name());
            if let DropReason::Rejected { code } = reason {
                w.str("code", code);
            }
            text::write_array(w.key("ids"), ids, |out, id| text::write_u64(out, id.get()));
            "dropped"
        }
        Event::Acked { id, offset } => {
            w.u64("id", id.get());
            match offset {
                Some(offset) => w.u64("offset", *offset),
                None => w.null("offset"), // typed `number | null`
            }
            "acked"
        }
        Event::AckTimedOut { id, status } => {
            w.u64("id", id.get());
            w.str("status", status.name());
            "ack_timed_out"
        }
        Event::Replied { id, payload } => {
            w.u64("id", id.get());
            w.value("payload", payload);
            "replied"
        }
        Event::RequestFailed { id, reason } => {
            w.u64("id", id.get());
            w.str("code", reason.code());
            w.str("message", &reason.to_string());
            if let RequestFailure::Rejected { code, .. } = reason {
                server_code(&mut w, code);
            }
            "request_failed"
        }
        Event::Subscribed {
            channel,
            offset,
            recovered,
        } => {
            w.str("channel", channel);
            w.u64("offset", *offset);
            w.bool("recovered", *recovered);
            "subscribed"
        }
        Event::Unsubscribed { channel } => {
            w.str("channel", channel);
            "unsubscribed"
        }
        Event::Presence {
            channel,
            members,
            joined,
            left,
        } => {
            w.str("channel", channel);
            w.strs("members", members);
            w.strs("joined", joined);
            w.strs("left", left);
            "presence"
        }
        Event::Rtt { rtt } => {
            w.u64("rtt", micros(*rtt));
            "rtt"
        }
        #[cfg(feature = "documents")]
        Event::DocumentChanged {
            channel,
            generation,
            origin,
            changes,
        } => {
            w.str("channel", channel);
            // Which opening: the wrapper hands it only to the TetherDocument of that one.
            w.u64("generation", *generation);
            w.str("origin", origin.name());
            crate::documents::write_key_changes(w.key("changes"), changes);
            "doc_change"
        }
        #[cfg(feature = "documents")]
        Event::ChangeRejected {
            channel,
            generation,
            change,
            code,
        } => {
            w.str("channel", channel);
            w.u64("generation", *generation);
            w.u64("change", change.get());
            w.str("code", code);
            "doc_rejected"
        }
        #[cfg(feature = "documents")]
        Event::DocumentResynced {
            channel,
            generation,
            version,
        } => {
            w.str("channel", channel);
            w.u64("generation", *generation);
            w.u64("version", *version);
            "doc_resynced"
        }
        Event::Error(err) => {
            w.str("code", err.kind());
            w.str("message", &err.to_string());
            match err {
                EngineError::Server { code, .. } => server_code(&mut w, code),
                EngineError::FrameTooLarge { size, max }
                | EngineError::SseLineTooLong { size, max, .. } => {
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

/// `{request, attempt, refresh}` for the wrapper's token request.
pub(crate) fn token_request(request: TransportId, attempt: u32, refresh: bool) -> String {
    object(|w| {
        w.u64("request", request.get());
        w.u64("attempt", u64::from(attempt));
        w.bool("refresh", refresh);
    })
}

/// The counters, plus the outbox's current size.
pub(crate) fn write_stats(out: &mut String, e: &Engine) {
    let s = e.stats();
    write_object(out, |w| {
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
            ("unexpectedDropped", s.unexpected_dropped),
            ("errors", s.errors),
            ("staleInputs", s.stale_inputs),
            ("outboxLength", e.outbox_len() as u64),
            ("outboxBytes", e.outbox_bytes() as u64),
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
