//! `tether demo`: the main job a newcomer runs first. It starts a relay and three clients on
//! loopback, then makes the network misbehave on purpose and prints what the engine does:
//!
//! 1. the relay crashes and restarts (clients back off with jitter, queue their messages,
//!    reconnect and resubscribe; the observer gets what it missed replayed);
//! 2. the observer's connection becomes a black hole (heartbeats find it, it reconnects and
//!    resumes from its last offset);
//! 3. one publisher loses its connection and overflows its small outbox (the oldest messages
//!    are dropped and every drop is reported).
//!
//! It ends with `sent N, delivered N, replayed K, dropped D (reported D), lost 0` and exits 0
//! only if nothing vanished silently.

mod tally;

use crate::output::payload_value;
use crate::{EXIT_GAVE_UP, EXIT_STDOUT_LOST};
use clap::Args;
use serde_json::json;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally::Tally;
use tether::{Client, Event, Events, Protocol, State};
use tether_relay::chaos::{ChaosProxy, Mode};
use tether_relay::{Relay, RelayConfig, RelayHandle};

/// Prints one line of the story. A stdout that can no longer be written (its reader went
/// away: `tether demo | head`) ends the demo at once with [`EXIT_STDOUT_LOST`], as SIGPIPE
/// ends most programs in such a pipeline: the story has no reader left, and the demo's relay
/// and clients live in this process. `println!` panicked instead, in whichever task printed
/// next (exit 101, with a panic message on the terminal).
fn print_line(line: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(i32::from(EXIT_STDOUT_LOST));
    }
}

/// Options of `tether demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Seed for the clients' jitter (the run is otherwise timing-dependent).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

const CHANNEL: &str = "news";

/// Everything the clients' event loops share.
struct Stage {
    start: Instant,
    tally: Mutex<Tally>,
}

impl Stage {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        print_line(format_args!(
            "[{:>6.2}s] {who:<6} {}",
            self.start.elapsed().as_secs_f64(),
            what.as_ref()
        ));
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    match scenario(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_GAVE_UP),
        Err(e) => {
            eprintln!("tether demo: {e}");
            ExitCode::from(crate::EXIT_USAGE)
        }
    }
}

fn relay_config() -> RelayConfig {
    RelayConfig {
        presence_grace: Duration::from_secs(2),
        ..RelayConfig::default()
    }
}

/// How long any one step may take before the demo gives up on it (it never hangs).
const STEP_LIMIT: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(100);

async fn scenario(args: DemoArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let stage = Arc::new(Stage {
        start: Instant::now(),
        tally: Mutex::new(Tally::default()),
    });
    let relay = Relay::bind("127.0.0.1:0", relay_config()).await?;
    let relay_addr = relay.local_addr();
    stage.say("relay", format!("listening on {}", relay.ws_url()));

    // Each client reaches the relay through its own proxy, so each can be cut off alone.
    let alice_link = ChaosProxy::start(relay_addr).await?;
    let bob_link = ChaosProxy::start(relay_addr).await?;
    let carol_link = ChaosProxy::start(relay_addr).await?;
    let alice = client(&stage, "alice", &alice_link, args.seed, 1_000)?;
    let bob = client(&stage, "bob", &bob_link, args.seed + 1, 1_000)?;
    let carol = client(&stage, "carol", &carol_link, args.seed + 2, 5)?;
    bob.subscribe(CHANNEL)?;
    for c in [&alice, &bob, &carol] {
        wait_state(c, STEP_LIMIT, State::is_open).await;
    }
    // A subscription starts when the relay confirms it: publishing before that would be
    // publishing to nobody.
    let subscribing = Instant::now();
    while stage.tally().observer_subscriptions == 0 && subscribing.elapsed() < STEP_LIMIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut seq = 0u64;
    stage.say(
        "demo",
        "== 1. normal traffic: alice publishes every 100 ms, bob reads ==",
    );
    publish_for(&stage, &alice, "alice", &mut seq, Duration::from_secs(1)).await;

    stage.say(
        "demo",
        "== 2. the relay crashes (no close frames) and restarts 2 s later ==",
    );
    stage.tally().observer_away = true;
    relay.abort().await;
    stage.say("relay", "crashed; alice keeps publishing into her outbox");
    publish_for(&stage, &alice, "alice", &mut seq, Duration::from_secs(2)).await;
    let relay = restart(relay_addr).await?;
    stage.say(
        "relay",
        format!(
            "restarted with an empty history (new epoch); alice has {} message(s) waiting",
            alice.outbox_len()
        ),
    );
    publish_for(&stage, &alice, "alice", &mut seq, Duration::from_secs(2)).await;

    stage.say(
        "demo",
        "== 3. bob's connection turns into a black hole (packets vanish) ==",
    );
    stage.tally().observer_away = true;
    bob_link.set_mode(Mode::BlackHole);
    let cut = Instant::now();
    let mut bob_state = bob.watch_state();
    while bob_state.borrow_and_update().is_open() && cut.elapsed() < STEP_LIMIT {
        publish(&stage, &alice, "alice", &mut seq);
        let _ = tokio::time::timeout(TICK, bob_state.changed()).await;
    }
    let noticed = if bob.state().is_open() {
        // Said as it is: the demo's summary still checks what was delivered.
        format!(
            "bob's heartbeat did NOT notice within {:.0} s; the network heals",
            STEP_LIMIT.as_secs_f64()
        )
    } else {
        format!(
            "bob's heartbeat noticed after {:.1} s; the network heals",
            cut.elapsed().as_secs_f64()
        )
    };
    stage.say("demo", noticed);
    bob_link.set_mode(Mode::Forward);
    publish_for(&stage, &alice, "alice", &mut seq, Duration::from_secs(2)).await;

    stage.say(
        "demo",
        "== 4. carol loses her network and overflows her 5-message outbox ==",
    );
    carol_link.set_mode(Mode::Refuse);
    carol_link.kill_all();
    wait_state(&carol, STEP_LIMIT, |s| !s.is_open()).await;
    for _ in 0..12 {
        publish(&stage, &carol, "carol", &mut seq);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    carol_link.set_mode(Mode::Forward);
    stage.say("demo", "carol's network is back");

    stage.say(
        "demo",
        "== 5. settling: every message lands or is reported ==",
    );
    let settle_start = Instant::now();
    while !stage.tally().settled() && settle_start.elapsed() < STEP_LIMIT {
        tokio::time::sleep(TICK).await;
    }
    for c in [&alice, &bob, &carol] {
        let _ = tokio::time::timeout(Duration::from_secs(3), c.close()).await;
    }
    relay.shutdown().await;

    let summary = stage.tally().summary();
    print_line("");
    print_line(summary.line());
    if summary.holds() {
        print_line(
            "every message was delivered exactly once or reported dropped: nothing lost silently",
        );
    } else {
        print_line(format_args!(
            "FAILED: some messages vanished without a report: seq {:?}",
            stage.tally().lost()
        ));
    }
    Ok(summary.holds())
}

/// Rebinds the relay on its old address (retrying while the OS releases the port).
async fn restart(addr: std::net::SocketAddr) -> std::io::Result<RelayHandle> {
    let mut last = None;
    for _ in 0..50 {
        match Relay::bind(addr, relay_config()).await {
            Ok(relay) => return Ok(relay),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cannot rebind")))
}

async fn wait_state(client: &Client, limit: Duration, pred: impl Fn(&State) -> bool) {
    let mut rx = client.watch_state();
    let _ = tokio::time::timeout(limit, rx.wait_for(|s| pred(s))).await;
}

/// Publishes one numbered message and records it.
fn publish(stage: &Stage, client: &Client, name: &'static str, seq: &mut u64) {
    *seq += 1;
    match client.publish(CHANNEL, json!({"seq": *seq, "from": name})) {
        Ok(id) => {
            let mut tally = stage.tally();
            tally.sent.insert(*seq);
            tally.ids.insert((name, id.get()), *seq);
        }
        Err(e) => stage.say(name, format!("publish refused: {e}")),
    }
}

async fn publish_for(
    stage: &Stage,
    client: &Client,
    name: &'static str,
    seq: &mut u64,
    d: Duration,
) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        publish(stage, client, name, seq);
        tokio::time::sleep(TICK).await;
    }
}

/// Builds a Tether client through `link`; its events are narrated and tallied.
fn client(
    stage: &Arc<Stage>,
    name: &'static str,
    link: &ChaosProxy,
    seed: u64,
    outbox: usize,
) -> Result<Client, tether::BuildError> {
    let (client, events) = Client::builder(link.ws_url("/"))
        .protocol(Protocol::Tether)
        .client_id(name)
        .seed(seed)
        .backoff_initial(Duration::from_millis(250))
        .backoff_max(Duration::from_secs(2))
        .heartbeat_interval(Duration::from_millis(500))
        .max_missed_pongs(2)
        .min_uptime(Duration::from_secs(1))
        .outbox_max_messages(outbox)
        .connect()?;
    tokio::spawn(narrate(stage.clone(), name, events));
    Ok(client)
}

/// Prints a client's events as a timeline and feeds the tally.
async fn narrate(stage: Arc<Stage>, name: &'static str, mut events: Events) {
    while let Some(event) = events.recv().await {
        match &event {
            Event::StateChanged { to, .. } => {
                if name == "bob" && !to.is_open() {
                    stage.tally().observer_away = true;
                }
                if !matches!(to, State::Waiting { .. } | State::Closing) {
                    stage.say(name, to.to_string());
                }
            }
            Event::ReconnectScheduled {
                attempt,
                delay,
                cause,
            } => stage.say(
                name,
                format!(
                    "{cause}: retry #{attempt} in {} ms (jittered backoff)",
                    delay.as_millis()
                ),
            ),
            Event::Subscribed {
                channel,
                offset,
                recovered,
            } => {
                if name == "bob" {
                    let mut tally = stage.tally();
                    tally.observer_away = false;
                    tally.observer_subscriptions += 1;
                }
                let how = if *recovered {
                    format!("resuming gap-free after #{offset}")
                } else {
                    format!("from #{offset} of the relay's current history")
                };
                stage.say(name, format!("subscribed to {channel}, {how}"));
            }
            Event::Presence {
                members,
                joined,
                left,
                ..
            } if !joined.is_empty() || !left.is_empty() => {
                stage.say(name, format!("presence now: {}", members.join(", ")))
            }
            Event::Acked { id, .. } => {
                let mut tally = stage.tally();
                if let Some(seq) = tally.seq(name, id.get()) {
                    if tally.observer_away {
                        tally.stored_while_away.insert(seq);
                    }
                }
            }
            Event::Dropped { ids, reason } => {
                let mut tally = stage.tally();
                let seqs: Vec<u64> = ids
                    .iter()
                    .filter_map(|id| tally.seq(name, id.get()))
                    .collect();
                tally.reported.extend(seqs.iter().copied());
                drop(tally);
                stage.say(
                    name,
                    format!(
                        "{} message(s) dropped, reason {}: seq {:?}",
                        ids.len(),
                        reason.name(),
                        seqs
                    ),
                );
            }
            Event::Message(m) if name == "bob" => {
                if let Some(seq) = payload_value(&m.payload)
                    .get("seq")
                    .and_then(|s| s.as_u64())
                {
                    *stage.tally().received.entry(seq).or_insert(0) += 1;
                }
            }
            _ => {}
        }
    }
}
