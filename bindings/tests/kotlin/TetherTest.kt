// The generated Kotlin bindings, on a real JVM, against the reference relay on loopback.
// Run by scripts/test-bindings (compiled with kotlinc, JNA from Debian, coroutines from the
// compiler's lib/). Needs TETHER_RELAY_BIN; prints `N passed, N failed`; exit status 1 on a
// failure. Every wait is bounded, and every process and client it starts it also stops.

import dev.tether.*
import kotlinx.coroutines.*
import java.io.File
import java.net.ServerSocket
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import kotlin.system.exitProcess

const val TOKEN = "s3cret"

/** Client A's listener queue, and a burst that overflows it for a blocked listener only. */
const val QUEUE = 256u
const val BURST = 150 // 150 messages + 150 acks for A: more than QUEUE behind a blocked listener
const val CHUNK = 25

/** The reference relay as a child process, restartable on the same port. */
class Relay(private val bin: String, private val log: File) {
    private var process: Process? = null
    var port = 0
        private set
    val url get() = "ws://127.0.0.1:$port/"

    fun start() {
        val pb = ProcessBuilder(bin, "--listen", "127.0.0.1:$port", "--token", TOKEN)
            .redirectError(ProcessBuilder.Redirect.appendTo(log))
        val p = pb.start()
        process = p
        val ready = CompletableFuture<String>()
        Thread {
            p.inputStream.bufferedReader().useLines { lines ->
                for (line in lines) if (line.startsWith("listening on ws://")) ready.complete(line)
            }
            ready.complete("")
        }.apply { isDaemon = true }.start()
        val line = ready.get(15, TimeUnit.SECONDS)
        check(line.isNotEmpty()) { "the relay exited before listening (see $log)" }
        port = line.substringAfterLast(':').trim('/').toInt()
    }

    /** SIGTERM lets it close every connection with 1012; SIGKILL is a crash. */
    fun stop(graceful: Boolean) {
        val p = process ?: return
        if (graceful) p.destroy() else p.destroyForcibly()
        if (!p.waitFor(15, TimeUnit.SECONDS)) {
            p.destroyForcibly()
            p.waitFor(5, TimeUnit.SECONDS)
        }
        process = null
    }
}

/** Records every event with the thread it arrived on; waits for events in order. */
class Recorder(private val onEach: (ClientEvent) -> Unit = {}) : ClientListener {
    private val lock = Object()
    val events = mutableListOf<ClientEvent>()
    val threads = mutableSetOf<String>()
    private var cursor = 0

    override fun onEvent(event: ClientEvent) {
        synchronized(lock) {
            events.add(event)
            threads.add(Thread.currentThread().name)
            lock.notifyAll()
        }
        onEach(event)
    }

    fun snapshot(): List<ClientEvent> = synchronized(lock) { events.toList() }

    /** The next event after the previous match that satisfies `pred`, within `ms`. */
    fun next(what: String, ms: Long = 10_000, pred: (ClientEvent) -> Boolean): ClientEvent {
        val deadline = System.nanoTime() + ms * 1_000_000
        synchronized(lock) {
            while (true) {
                while (cursor < events.size) {
                    val e = events[cursor++]
                    if (pred(e)) return e
                }
                val left = (deadline - System.nanoTime()) / 1_000_000
                if (left <= 0) throw AssertionError("no $what within $ms ms; saw ${events.takeLast(8)}")
                lock.wait(left)
            }
        }
    }

    /** Index of the next event, to look only at what happens after this point. */
    fun mark(): Int = synchronized(lock) { events.size }

    /** Waits until the events from `from` on satisfy `cond`, in any order, within `ms`. */
    fun waitFor(what: String, from: Int = 0, ms: Long = 10_000, cond: (List<ClientEvent>) -> Boolean) {
        val deadline = System.nanoTime() + ms * 1_000_000
        synchronized(lock) {
            while (!cond(events.subList(from, events.size))) {
                val left = (deadline - System.nanoTime()) / 1_000_000
                if (left <= 0) throw AssertionError("no $what within $ms ms; saw ${events.takeLast(8)}")
                lock.wait(left)
            }
        }
    }

    fun state(what: String, ms: Long = 10_000, pred: (ConnectionState) -> Boolean) =
        next(what, ms) { it is ClientEvent.StateChanged && pred(it.current) } as ClientEvent.StateChanged
}

class Tokens : TokenProvider {
    val calls = AtomicInteger()
    override suspend fun token(refresh: Boolean): String {
        calls.incrementAndGet()
        delay(5) // really asynchronous
        return TOKEN
    }
}

fun json(s: String) = Payload.Json(s)

fun List<ClientEvent>.hasMessage(payload: Payload) =
    any { it is ClientEvent.Message && it.message.payload == payload }

fun base(url: String, id: String, tokens: Tokens) = ClientConfig(url)
    .wireProtocol(WireProtocol.TETHER)
    .clientId(id)
    .tokenProvider(tokens)
    .backoffInitialMs(100uL)
    .backoffMaxMs(400uL)
    .jitter(Jitter.NONE)

fun freePort(): Int = ServerSocket(0).use { it.localPort }

/** `shutdown()` from non-suspending code, bounded. */
fun Client.shutdownBlocking() = runBlocking { withTimeout(10_000) { shutdown() } }

inline fun <reified E : Throwable> expectThrows(block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("expected ${E::class.simpleName}, got $e")
    }
    throw AssertionError("expected ${E::class.simpleName}, nothing was thrown")
}

fun main() {
    val bin = System.getenv("TETHER_RELAY_BIN") ?: error("TETHER_RELAY_BIN is not set")
    val logDir = File(System.getenv("TETHER_TEST_LOG_DIR") ?: "target/bindings/logs").apply { mkdirs() }
    val relay = Relay(bin, File(logDir, "relay-kotlin.log"))
    // A hung test must not hang CI: the whole program gets three minutes.
    Thread {
        Thread.sleep(180_000)
        System.err.println("kotlin bindings test: global timeout")
        relay.stop(false)
        Runtime.getRuntime().halt(2)
    }.apply { isDaemon = true }.start()

    var passed = 0
    var failed = 0
    fun test(name: String, body: suspend CoroutineScope.() -> Unit) {
        try {
            runBlocking { withTimeout(60_000) { body() } }
            passed++
            println("ok   $name")
        } catch (e: Throwable) {
            failed++
            println("FAIL $name: $e")
            e.printStackTrace(System.out)
        }
    }

    relay.start()
    val tokens = Tokens()
    try {
        test("typed errors: invalid config names the field, raw mode refuses channels") {
            check(sdkVersion().isNotEmpty())
            val bad = expectThrows<ClientException.InvalidConfig> { Client(ClientConfig("ftp://nowhere")) }
            check(bad.field == "url") { bad }
            val zero = expectThrows<ClientException.InvalidConfig> {
                Client(ClientConfig("ws://127.0.0.1:9/").backoffInitialMs(0uL))
            }
            check(zero.field == "backoff.initial") { zero }
            Client(ClientConfig("ws://127.0.0.1:9/")).use { raw ->
                expectThrows<ClientException.NeedsTetherProtocol> { raw.subscribe("room") }
                val arg = expectThrows<ClientException.InvalidArgument> { raw.send(json("{not json")) }
                check(arg.argument == "payload") { arg }
                check(raw.state() == ConnectionState.Idle)
            }
        }

        test("listener: current state first, then transitions in order, on its own thread") {
            Client(base(relay.url, "kt-order", tokens)).use { c ->
                val rec = Recorder()
                val handle = c.addListener(rec)
                val first = rec.next("snapshot") { true } as ClientEvent.StateChanged
                check(first.previous == null && first.current == ConnectionState.Idle) { first }
                c.connect()
                val connecting = rec.next("connecting") { true } as ClientEvent.StateChanged
                check(connecting.previous == ConnectionState.Idle) { connecting }
                check(connecting.current == ConnectionState.Connecting(1u)) { connecting }
                val open = rec.next("open") { true } as ClientEvent.StateChanged
                check(open.previous == ConnectionState.Connecting(1u) && open.current == ConnectionState.Open) { open }
                check(c.state() == ConnectionState.Open)
                // Delivered on a thread the library started (JNA names it Thread-N), not ours.
                check(rec.threads.none { it == "main" }) { rec.threads }
                check(tokens.calls.get() >= 1)
                handle.cancel()
                check(handle.isCancelled())
            }
        }

        // Two clients on one channel, shared by the tests below.
        val recA = Recorder()
        val recB = Recorder()
        val a = Client(base(relay.url, "kt-a", tokens).listenerQueueCapacity(QUEUE))
        val b = Client(base(relay.url, "kt-b", tokens))
        val handleA = a.addListener(recA)
        val handleB = b.addListener(recB)
        try {
            test("publish on a channel is acked and received by the other client, with presence") {
                a.subscribe("room")
                b.subscribe("room")
                a.connect()
                b.connect()
                recA.next("A subscribed") { it is ClientEvent.Subscribed && it.channel == "room" }
                recB.next("B subscribed") { it is ClientEvent.Subscribed && it.channel == "room" }
                val offset = a.publishAcked("room", json("""{"n":1}"""), 5_000uL)
                check(offset == 1uL) { "offset $offset" }
                val m = recB.next("message on B") { it is ClientEvent.Message } as ClientEvent.Message
                check(m.message.channel == "room" && m.message.offset == 1uL) { m }
                check(m.message.payload == json("""{"n":1}""")) { m }
                recB.waitFor("A in B's presence") { evs -> evs.any { it is ClientEvent.Presence && "kt-a" in it.members } }
                check(b.presence("room")?.contains("kt-a") == true) { b.presence("room").toString() }
                check(b.presence("elsewhere") == null)
            }

            test("request gets the relay's echo; publish gets an Acked event, publishWith(ack = false) none") {
                check(a.request(json("""{"q":42}"""), 5_000uL) == """{"q":42}""")
                val id = a.publish("room", Payload.Text("plain"))
                recA.next("Acked for $id") { it is ClientEvent.Acked && it.id == id }
                val m = recB.next("text message") { it is ClientEvent.Message } as ClientEvent.Message
                check(m.message.payload == Payload.Json("\"plain\"")) { m }

                val fromB = recB.mark()
                val once = a.publishWith("room", json("\"once\""), SendOptions(ack = false))
                val offset = a.publishAcked("room", json("\"acked\""), 5_000uL)
                recA.waitFor("the later message's Acked") { evs -> evs.any { it is ClientEvent.Acked && it.offset == offset } }
                check(recA.snapshot().none { it is ClientEvent.Acked && it.id == once }) { "an unacked publish was acked" }
                recB.waitFor("both on B", fromB) { it.hasMessage(json("\"once\"")) && it.hasMessage(json("\"acked\"")) }
            }

            test("a listener that throws or blocks stalls nothing and is told what it missed") {
                val thrower = Recorder { throw IllegalStateException("listener bug") }
                val release = CountDownLatch(1)
                val blocker = Recorder { if (it is ClientEvent.Message) release.await(30, TimeUnit.SECONDS) }
                val h1 = a.addListener(thrower)
                val h2 = a.addListener(blocker)
                try {
                    val fromA = recA.mark()
                    val fromB = recB.mark()
                    // Paced in chunks so that the fast listeners never fall QUEUE events
                    // behind: the blocked listener's lag is then certain, and nobody else's
                    // happens.
                    for (chunk in (1..BURST).chunked(CHUNK)) {
                        val acks = chunk.map { i -> async(Dispatchers.Default) { a.publishAcked("room", json("$i"), 10_000uL) } }
                        check(acks.awaitAll().all { it != null })
                        recA.waitFor("messages ${chunk.first()}..${chunk.last()} on A", fromA) { evs -> chunk.all { evs.hasMessage(json("$it")) } }
                    }
                    // Concurrent publishes may be sent in any order; all must arrive.
                    recB.waitFor("$BURST messages on B", fromB) { evs -> (1..BURST).all { evs.hasMessage(json("$it")) } }
                    thrower.next("the thrower still gets events", 5_000) { it is ClientEvent.Acked }
                    check(a.stats().listenerFailures > 0uL) { a.stats() }
                    release.countDown()
                    val lag = blocker.next("Lagged") { it is ClientEvent.Lagged } as ClientEvent.Lagged
                    check(lag.missed > 0uL) { lag }
                    val snap = blocker.next("snapshot after lag") { true } as ClientEvent.StateChanged
                    check(snap.previous == null && snap.current == ConnectionState.Open) { snap }
                    check(a.stats().listenerEventsMissed >= lag.missed) { a.stats() }
                    check(a.state() == ConnectionState.Open)
                } finally {
                    release.countDown()
                    h1.cancel()
                    h2.cancel()
                }
            }

            test("unreachable server: a timed-out acked send is dropped, not sent later; cancel; TTL") {
                Client(base("ws://127.0.0.1:${freePort()}/", "kt-lonely", tokens)).use { c ->
                    val rec = Recorder()
                    val h = c.addListener(rec)
                    c.connect()
                    val t0 = System.nanoTime()
                    expectThrows<ClientException.TimedOut> { c.sendAcked(json("1"), 300uL) }
                    val took = (System.nanoTime() - t0) / 1_000_000
                    check(took in 250..5_000) { "timed out after $took ms" }
                    // Never sent: dropped with the timeout as its TTL instead of lingering.
                    rec.next("the timed-out send dropped") { it is ClientEvent.Dropped && it.reason == DropReason.Expired }
                    val job = launch(Dispatchers.Default) { c.publishAcked("room", json("2"), null) }
                    delay(100)
                    job.cancel()
                    withTimeout(2_000) { job.join() }
                    check(job.isCancelled)
                    check(c.stats().outboxLen == 1uL) { c.stats() } // no timeout: it still waits
                    val id = c.publishWith("room", json("3"), SendOptions(ttlMs = 100uL))
                    val dropped = rec.next("expired by its TTL", 5_000) { it is ClientEvent.Dropped && id in it.ids } as ClientEvent.Dropped
                    check(dropped.reason == DropReason.Expired) { dropped }
                    check(c.stats().droppedExpired == 2uL && c.stats().outboxLen == 1uL) { c.stats() }
                    h.cancel()
                    c.shutdown()
                }
            }

            test("relay killed and restarted: reconnect, queued acked messages all delivered") {
                val callsBefore = tokens.calls.get()
                val slow = Recorder()
                // A client whose backoff is long: networkChanged(true) must skip the wait.
                val d = Client(base(relay.url, "kt-d", tokens).backoffInitialMs(30_000uL).backoffMaxMs(30_000uL))
                val hd = d.addListener(slow)
                try {
                    d.connect()
                    slow.state("D open") { it == ConnectionState.Open }

                    relay.stop(graceful = false)
                    // The engine reports the state change first, then why and for how long.
                    recA.state("A waiting") { it is ConnectionState.Waiting }
                    val sched = recA.next("reconnect scheduled") { it is ClientEvent.ReconnectScheduled } as ClientEvent.ReconnectScheduled
                    check(sched.attempt >= 1u && sched.delayMs <= 400uL) { sched }
                    val waiting = slow.state("D waiting") { it is ConnectionState.Waiting }.current as ConnectionState.Waiting
                    val inMs = waiting.retryAtUnixMs.toLong() - System.currentTimeMillis()
                    check(inMs in 20_000..30_500) { "D retries in $inMs ms" }

                    // Publish while the relay is down: queued, not acked.
                    val acks = (1..5).map { i -> async(Dispatchers.Default) { a.publishAcked("room", json("""{"down":$i}"""), 20_000uL) } }
                    delay(300)
                    check(acks.none { it.isCompleted }) { "acked while the relay was down" }
                    check(a.stats().outboxLen >= 5uL) { a.stats() }

                    val fromA = recA.mark()
                    relay.start()
                    recA.state("A open again", 15_000) { it == ConnectionState.Open }
                    val offsets = acks.awaitAll()
                    check(offsets.all { it != null }) { offsets }
                    // A is subscribed too: the relay stored and delivered all five.
                    recA.waitFor("A's five queued messages", fromA) { evs -> (1..5).all { evs.hasMessage(json("""{"down":$it}""")) } }
                    check(a.stats().outboxLen == 0uL) { a.stats() }
                    check(a.stats().reconnects >= 1uL) { a.stats() }
                    // B is back and subscribed in the relay's new epoch: it gets what comes next.
                    recB.state("B open again", 15_000) { it == ConnectionState.Open }
                    val sub = recB.next("B resubscribed") { it is ClientEvent.Subscribed } as ClientEvent.Subscribed
                    check(!sub.recovered) { "a restarted relay has a new epoch: $sub" }
                    val beforeAfter = recB.mark()
                    a.publishAcked("room", json("\"after\""), 5_000uL)
                    recB.waitFor("B receives after the restart", beforeAfter) { it.hasMessage(json("\"after\"")) }
                    check(tokens.calls.get() > callsBefore + 2) { "token provider not asked on every attempt" }

                    // D is still waiting out its 30 s backoff: the network coming back skips it.
                    check(d.state() is ConnectionState.Waiting) { d.state() }
                    d.networkChanged(true)
                    slow.state("D open after networkChanged(true)", 5_000) { it == ConnectionState.Open }
                    d.setForeground(false)
                    d.setForeground(true)
                    check(d.state() == ConnectionState.Open)
                } finally {
                    hd.cancel()
                    d.close()
                }
            }

            test("graceful relay restart: close 1012 is retried within the advised window") {
                relay.stop(graceful = true)
                recA.state("A waiting after 1012") { it is ConnectionState.Waiting }
                val sched = recA.next("reconnect after 1012") { it is ClientEvent.ReconnectScheduled } as ClientEvent.ReconnectScheduled
                val cause = sched.cause
                check(cause is DisconnectCause.Closed && cause.code == 1012.toUShort()) { sched }
                check(sched.delayMs <= 5_000uL) { sched }
                relay.start()
                recA.state("A open after 1012", 20_000) { it == ConnectionState.Open }
                recB.state("B open after 1012", 20_000) { it == ConnectionState.Open }
            }

            test("disconnect closes with 1000; send is refused; connect starts again; cancel stops events") {
                val reason = a.disconnect()
                check(reason == CloseReason.App(1000u)) { reason }
                recA.state("A closing") { it == ConnectionState.Closing }
                recA.state("A closed") { it == ConnectionState.Closed(CloseReason.App(1000u)) }
                expectThrows<ClientException.Closed> { a.send(json("1")) }
                a.connect()
                recA.state("A open again") { it == ConnectionState.Open }
                handleA.cancel()
                delay(200) // at most one event already being handed over may still arrive
                val seen = recA.snapshot().size
                a.disconnect() // Closing, Closed: none of it reaches the cancelled listener
                delay(200)
                check(recA.snapshot().size == seen) { "events after cancel: ${recA.snapshot().drop(seen)}" }
            }
        } finally {
            handleA.cancel()
            handleB.cancel()
            a.shutdownBlocking()
            b.shutdownBlocking()
            a.close()
            b.close()
        }
    } finally {
        relay.stop(graceful = false)
    }
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
