//! [`SendOptions`]: per-message options of `Client.sendWith` and `Client.publishWith`,
//! mirrored into `tether::SendOptions`.

use std::time::Duration;

/// How one message is sent. Every field has a default: `SendOptions()` is a plain
/// `send`/`publish`; `SendOptions(ack = false)` (Kotlin), `SendOptions(ttlMs: 5_000)` (Swift),
/// `SendOptions(ttl_ms=5000)` (Python, keyword arguments) set one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, uniffi::Record)]
pub struct SendOptions {
    /// Keep the message until the server acknowledges it and re-send it after a reconnect
    /// (`true`), or write it once (`false`, fire and forget: no `Acked` event). `null`: the
    /// protocol's default (acknowledged in Tether mode; raw mode has no acknowledgements).
    #[uniffi(default)]
    pub ack: Option<bool>,
    /// Drop the message (a `Dropped` event with reason `Expired`) if it cannot be sent, or
    /// re-sent after a reconnect, within this many milliseconds. `null`: the config's
    /// `messageTtlMs`.
    #[uniffi(default)]
    pub ttl_ms: Option<u64>,
    /// Stop waiting for the acknowledgement after this many milliseconds (acknowledged sends
    /// only): an `AckTimedOut` event then says whether the message was dropped unsent or
    /// still awaits its ack. It also caps the TTL. `null`: no limit.
    #[uniffi(default)]
    pub timeout_ms: Option<u64>,
}

impl From<SendOptions> for tether::SendOptions {
    fn from(o: SendOptions) -> Self {
        tether::SendOptions {
            ack: o.ack,
            ttl: o.ttl_ms.map(Duration::from_millis),
            timeout: o.timeout_ms.map(Duration::from_millis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_plain_send() {
        assert_eq!(
            tether::SendOptions::from(SendOptions::default()),
            tether::SendOptions::default()
        );
        let once = tether::SendOptions::from(SendOptions {
            ack: Some(false),
            ttl_ms: Some(1500),
            timeout_ms: Some(900),
        });
        assert_eq!(once.ack, Some(false));
        assert_eq!(once.ttl, Some(Duration::from_millis(1500)));
        assert_eq!(once.timeout, Some(Duration::from_millis(900)));
    }
}
