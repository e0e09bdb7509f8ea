// The generated Kotlin bindings, on a real JVM, against the reference relay on loopback.
// Run by scripts/test-bindings (compiled with kotlinc, JNA from Debian, coroutines from the
// compiler's lib/). Needs TETHER_RELAY_BIN; prints `N passed, N failed`; exit status 1 on a
// failure. Every wait is bounded, and every process and client it starts it also stops.

import dev.tether.*
import kotlinx.coroutines.*
import java.io.File
import java.io.IOException
import java.net.InetAddress
import java.net.ServerSocket
import java.net.Socket
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
open class Events<E>(private val onEach: (E) -> Unit = {}) {
    private val lock = Object()
    val events = mutableListOf<E>()
    val threads = mutableSetOf<String>()
    private var cursor = 0

    fun record(event: E) {
        synchronized(lock) {
            events.add(event)
            threads.add(Thread.currentThread().name)
            lock.notifyAll()
        }
        onEach(event)
    }

    fun snapshot(): List<E> = synchronized(lock) { events.toList() }

    /** The next event after the previous match that satisfies `pred`, within `ms`. */
    fun next(what: String, ms: Long = 10_000, pred: (E) -> Boolean): E {
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
    fun waitFor(what: String, from: Int = 0, ms: Long = 10_000, cond: (List<E>) -> Boolean) {
        val deadline = System.nanoTime() + ms * 1_000_000
        synchronized(lock) {
            while (!cond(events.subList(from, events.size))) {
                val left = (deadline - System.nanoTime()) / 1_000_000
                if (left <= 0) throw AssertionError("no $what within $ms ms; saw ${events.takeLast(8)}")
                lock.wait(left)
            }
        }
    }
}

/** A client listener that records. */
class Recorder(onEach: (ClientEvent) -> Unit = {}) : Events<ClientEvent>(onEach), ClientListener {
    override fun onEvent(event: ClientEvent) = record(event)

    fun state(what: String, ms: Long = 10_000, pred: (ConnectionState) -> Boolean) =
        next(what, ms) { it is ClientEvent.StateChanged && pred(it.current) } as ClientEvent.StateChanged
}

/** A document listener that records. */
class DocRecorder : Events<DocumentEvent>(), DocumentListener {
    override fun onEvent(event: DocumentEvent) = record(event)
}

/**
 * A TCP proxy on 127.0.0.1 in front of the relay that can cut its client off: `cut()` closes
 * every connection and refuses new ones until `restore()`. The relay (and its documents)
 * stay up meanwhile.
 */
class CutProxy(private val upstreamPort: Int) : AutoCloseable {
    private val loopback = InetAddress.getLoopbackAddress()
    private val server = ServerSocket(0, 50, loopback)
    private val lock = Object()
    private var refusing = false
    private val sockets = mutableSetOf<Socket>()
    val url = "ws://127.0.0.1:${server.localPort}/"

    private val acceptor = Thread {
        while (true) {
            val client = try { server.accept() } catch (e: IOException) { break }
            synchronized(lock) {
                val upstream = if (refusing) null else try { Socket(loopback, upstreamPort) } catch (e: IOException) { null }
                if (upstream == null) {
                    client.close()
                } else {
                    sockets += client
                    sockets += upstream
                    pipe(client, upstream)
                    pipe(upstream, client)
                }
            }
        }
    }.apply { isDaemon = true; start() }

    private fun pipe(from: Socket, to: Socket) = Thread {
        try {
            from.getInputStream().copyTo(to.getOutputStream())
        } catch (_: IOException) {
        } finally {
            from.close()
            to.close()
        }
    }.apply { isDaemon = true; start() }

    fun cut() = synchronized(lock) {
        refusing = true
        sockets.forEach { it.close() }
        sockets.clear()
    }

    fun restore() = synchronized(lock) { refusing = false }

    override fun close() {
        server.close()
        cut()
        acceptor.join(5_000)
    }
}

/** Polls `cond` every 10 ms until it holds, for at most `ms`. */
suspend fun until(what: String, ms: Long = 10_000, cond: () -> Boolean) {
    val deadline = System.nanoTime() + ms * 1_000_000
    while (!cond()) {
        if (System.nanoTime() > deadline) throw AssertionError("not $what within $ms ms")
        delay(10)
    }
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

typealias Test = (String, suspend CoroutineScope.() -> Unit) -> Unit

fun List<DocumentEvent>.changed(origin: ChangeOrigin, key: String, pred: (KeyChange) -> Boolean = { true }) =
    any { e -> e is DocumentEvent.Changed && e.origin == origin && e.changes.any { it.key == key && pred(it) } }

/**
 * Shared documents between two clients: Alice on the relay directly, Bob through a proxy that
 * can cut him off. Then a relay restart, and `shutdown()`.
 */
fun documents(relay: Relay, tokens: Tokens, test: Test) {
    val proxy = CutProxy(relay.port)
    val recAlice = Recorder()
    val recBob = Recorder()
    val alice = Client(base(relay.url, "kt-alice", tokens))
    val bob = Client(base(proxy.url, "kt-bob", tokens))
    val handles = mutableListOf(alice.addListener(recAlice), bob.addListener(recBob))
    try {
        alice.connect()
        bob.connect()
        val listA = alice.document("kt-list")
        val listB = bob.document("kt-list")
        val evA = DocRecorder()
        val evB = DocRecorder()
        handles += listA.addListener(evA)
        handles += listB.addListener(evB)

        test("documents: a local change shows at once, is confirmed, and both clients converge") {
            val first = evA.next("snapshot first") { true } as DocumentEvent.Snapshot
            check(first.values.isEmpty() && first.pending == 0u) { first }
            until("both synced") { listA.version() != null && listB.version() != null }

            val id = listA.set("title", "\"groceries\"")
            check(listA.get("title") == "\"groceries\"") { "not visible at once: ${listA.snapshot()}" }
            val local = evA.next("local change") { it is DocumentEvent.Changed } as DocumentEvent.Changed
            check(local.origin == ChangeOrigin.LOCAL_PENDING) { local }
            check(local.changes == listOf(KeyChange("title", "\"groceries\"", false))) { local }
            evA.next("confirmed") { it is DocumentEvent.Changed && it.origin == ChangeOrigin.CONFIRMED }
            evB.waitFor("Alice's change on Bob") { it.changed(ChangeOrigin.REMOTE, "title") { c -> c.value == "\"groceries\"" } }
            check(listB.get("title") == "\"groceries\"") { listB.snapshot() }
            // The client listener sees the same, in order with the connection's events.
            recAlice.next("DocumentChanged on the client listener") {
                it is ClientEvent.DocumentChanged && it.channel == "kt-list" && it.origin == ChangeOrigin.LOCAL_PENDING
            }
            check(evA.threads.none { it == "main" }) { evA.threads }
            check(id > 0uL)

            // An atomic change of several keys, from Bob.
            listB.change(listOf(DocumentOp.Set("count", "1"), DocumentOp.Delete("title"), DocumentOp.Insert("tags", "[\"food\"]")))
            until("converged") {
                listA.pending() == 0u && listB.pending() == 0u && listA.snapshot() == listB.snapshot() && listA.get("title") == null
            }
            check(listA.snapshot() == mapOf("count" to "1", "tags" to "[\"food\"]")) { listA.snapshot() }
            check(listA.snapshotJson() == """{"count":1,"tags":["food"]}""") { listA.snapshotJson() }
            check(listA.version() == listB.version()) { "${listA.version()} ${listB.version()}" }

            // Refused at once, typed.
            val notJson = expectThrows<ClientException.InvalidArgument> { listA.set("x", "not json") }
            check(notJson.argument == "json") { notJson }
            val empty = expectThrows<ClientException.InvalidArgument> { listA.change(emptyList()) }
            check(empty.argument == "ops") { empty }
            val taken = expectThrows<ClientException.Rejected> { listA.insert("count", "5") }
            check(taken.code == "conflict") { taken }
            val notNumber = expectThrows<ClientException.Rejected> { listA.increment("tags", 1L) }
            check(notNumber.code == "type_mismatch") { notNumber }
            check(listA.pending() == 0u && listA.get("count") == "1") { "a refused change left a trace" }
        }

        test("documents: concurrent sets on one key converge; the loser is told overwroteLocal") {
            val fromA = evA.mark()
            val fromB = evB.mark()
            listA.set("owner", "\"alice\"")
            listB.set("owner", "\"bob\"")
            until("converged") {
                listA.pending() == 0u && listB.pending() == 0u && listA.get("owner") == listB.get("owner")
            }
            val winner = listA.get("owner")
            val aLost = winner == "\"bob\""
            val (loser, from) = if (aLost) evA to fromA else evB to fromB
            val (other, otherFrom) = if (aLost) evB to fromB else evA to fromA
            loser.waitFor("the loser told", from) {
                it.changed(ChangeOrigin.REMOTE, "owner") { c -> c.overwroteLocal && c.value == winner }
            }
            check(!other.snapshot().drop(otherFrom).changed(ChangeOrigin.REMOTE, "owner") { c -> c.overwroteLocal }) {
                "the winner was told it lost"
            }
            check(listA.snapshot() == listB.snapshot())
        }

        test("documents: increments from both while Bob is cut off sum exactly; his insert conflict is rejected and rolled back") {
            val votesA = alice.document("kt-votes")
            val votesB = bob.document("kt-votes")
            val vB = DocRecorder()
            handles += votesB.addListener(vB)
            until("both synced") { votesA.version() != null && votesB.version() != null }

            proxy.cut()
            recBob.state("Bob cut off") { it is ConnectionState.Waiting }
            for (i in 1..10) {
                votesA.increment("yes", 1L)
                votesB.increment("yes", 2L)
            }
            votesA.insert("seat", "\"alice\"")
            val claim = votesB.insert("seat", "\"bob\"")
            check(votesB.get("yes") == "20" && votesB.get("seat") == "\"bob\"") { "Bob's own edits show while cut off: ${votesB.snapshot()}" }
            until("Alice settles") { votesA.pending() == 0u && votesA.get("yes") == "10" }
            check(votesB.pending() == 11u) { votesB.pending() }
            val fromBob = vB.mark()

            proxy.restore()
            // Skip the backoff wait: only a change from offline cuts it.
            bob.networkChanged(false)
            bob.networkChanged(true)
            until("both converge", 15_000) {
                votesA.pending() == 0u && votesB.pending() == 0u && votesA.get("yes") == "30" && votesB.get("yes") == "30"
            }
            check(votesB.get("seat") == "\"alice\"") { "the later insert lost: ${votesB.snapshot()}" }
            check(votesA.snapshot() == votesB.snapshot())
            val rejected = vB.next("Rejected") { it is DocumentEvent.Rejected } as DocumentEvent.Rejected
            check(rejected.change == claim && rejected.code == "conflict") { rejected }
            // Bob's view of the seat went back from his claim to Alice's (a rollback, or the
            // remote change the claim no longer applies on, whichever reached him first).
            vB.waitFor("Bob's claim rolled back", fromBob) { evs ->
                evs.any { e ->
                    e is DocumentEvent.Changed && e.origin in setOf(ChangeOrigin.ROLLED_BACK, ChangeOrigin.REMOTE) &&
                        e.changes.any { it.key == "seat" && it.value == "\"alice\"" }
                }
            }
            recBob.next("ChangeRejected on the client listener") {
                it is ClientEvent.ChangeRejected && it.channel == "kt-votes" && it.change == claim && it.code == "conflict"
            }
        }

        test("documents: a restarted relay (empty, new epoch) resyncs them; edits made while it was down are kept") {
            val fromA = evA.mark()
            relay.stop(graceful = false)
            recAlice.state("Alice waiting") { it is ConnectionState.Waiting }
            listA.increment("down", 5L)
            listB.increment("down", 7L)
            relay.start()
            for (c in listOf(alice, bob)) {
                c.networkChanged(false)
                c.networkChanged(true)
            }
            evA.waitFor("Resynced", fromA, 15_000) { evs -> evs.any { it is DocumentEvent.Resynced } }
            recAlice.next("DocumentResynced on the client listener") { it is ClientEvent.DocumentResynced && it.channel == "kt-list" }
            until("converged after the restart", 15_000) {
                listA.pending() == 0u && listB.pending() == 0u && listA.get("down") == "12" && listB.get("down") == "12"
            }
            check(listA.snapshot() == mapOf("down" to "12")) { "the relay forgot the rest: ${listA.snapshot()}" }
            // The document's state is read at once; its listener gets the events on its own
            // thread, so their arrival is waited for (an immediate check raced it).
            evA.waitFor("Alice told the relay forgot count", fromA, 5_000) { evs ->
                evs.changed(ChangeOrigin.REMOTE, "count") { it.value == null }
            }
        }

        test("documents: a closed document gets no more remote changes, refuses edits, and opens again") {
            val notesA = alice.document("kt-notes")
            val notesB = bob.document("kt-notes")
            val ev = DocRecorder()
            handles += notesB.addListener(ev)
            until("both synced") { notesA.epoch() != null && notesB.epoch() != null }
            check(notesA.epoch() == notesB.epoch()) { "one relay, one epoch: ${notesA.epoch()} ${notesB.epoch()}" }
            val beforeSet = recBob.mark()
            val beforeSetDoc = ev.mark()
            notesA.set("n", "1")
            until("Bob has it") { notesB.get("n") == "1" && notesA.pending() == 0u }
            // Its events reach the listeners on their own thread, maybe after the state: waited
            // for, or they would land after the marks below and look like changes after the close.
            // Named by the opening they are about: this handle's.
            val opening = notesB.generation()
            recBob.waitFor("Bob told of n=1", beforeSet, 5_000) { evs ->
                evs.any { it is ClientEvent.DocumentChanged && it.channel == "kt-notes" && it.generation == opening }
            }
            // The change itself, not just any event: the listener's first event, its
            // Snapshot, may arrive after the mark, and then n=1 came after the close's mark.
            ev.waitFor("Bob's document listener told of n=1", beforeSetDoc, 5_000) { evs ->
                evs.changed(ChangeOrigin.REMOTE, "n") { it.value == "1" }
            }
            check(notesA.confirmed() == mapOf("n" to "1") && notesB.confirmed() == mapOf("n" to "1")) { notesB.confirmed() }

            notesB.closeDocument()
            val sinceDoc = ev.mark()
            val since = recBob.mark()
            notesA.set("n", "2")
            // Then a change on a document Bob still has open: the relay forwards Alice's
            // changes in order, so once Bob has this one, he has had the change to "n" too.
            listA.set("barrier", "\"after close\"")
            recBob.next("the later change on Bob's open document") {
                it is ClientEvent.DocumentChanged && it.channel == "kt-list" && it.origin == ChangeOrigin.REMOTE
            }
            check(recBob.snapshot().drop(since).none { it is ClientEvent.DocumentChanged && it.channel == "kt-notes" }) {
                "a closed document got a remote change"
            }
            check(ev.snapshot().drop(sinceDoc).isEmpty()) { "its listener got events after the close: ${ev.snapshot()}" }
            // Closed: reads are empty, changes refused (typed).
            check(notesB.get("n") == null && notesB.version() == null && notesB.epoch() == null) { notesB.snapshot() }
            check(notesB.confirmed().isEmpty() && notesB.snapshot().isEmpty()) { notesB.confirmed() }
            val closed = expectThrows<ClientException.DocumentClosed> { notesB.set("n", "3") }
            check(closed.channel == "kt-notes") { closed }
            notesB.closeDocument() // again: nothing happens

            val beforeReopen = recBob.mark()
            val again = bob.document("kt-notes")
            until("opened again and resynced") { again.get("n") == "2" }
            check(again.epoch() == notesA.epoch()) { "${again.epoch()} ${notesA.epoch()}" }
            // A new opening: a greater number, which its events carry and the old one's do not.
            val reopened = again.generation()
            check(reopened > opening && notesB.generation() == opening) { "$opening, then $reopened" }
            recBob.waitFor("the new opening's sync on the client listener", beforeReopen, 5_000) { evs ->
                evs.any { it is ClientEvent.DocumentResynced && it.channel == "kt-notes" && it.generation == reopened }
            }
        }

        test("shutdown: returns once closed and every listener has had its last event; nothing restarts it") {
            val fromA = recAlice.mark()
            alice.shutdown()
            // Already delivered when shutdown() returns: no waiting.
            val last = recAlice.snapshot().last()
            check(last is ClientEvent.StateChanged && last.current == ConnectionState.Closed(CloseReason.App(1000u))) { last }
            check(recAlice.snapshot().drop(fromA).any { it is ClientEvent.StateChanged && it.current == ConnectionState.Closing })
            alice.connect()
            check(alice.state() == ConnectionState.Closed(CloseReason.App(1000u))) { alice.state() }
            expectThrows<ClientException.Closed> { alice.send(json("1")) }
            expectThrows<ClientException.Closed> { alice.document("more") }
            val seen = evA.mark()
            delay(100)
            check(evA.mark() == seen) { "document events after shutdown" }
            alice.shutdown() // idempotent
        }
    } finally {
        handles.forEach { it.cancel() }
        alice.shutdownBlocking()
        bob.shutdownBlocking()
        alice.close()
        bob.close()
        proxy.close()
    }
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
            // A variant with fields keeps them, and its message shows them.
            check(bad.message?.startsWith("field=url, reason=") == true) { "message: ${bad.message}" }
            // toString() is the Rust SDK's Display text, also for variants without fields.
            check(bad.toString().startsWith("invalid config `url`: ")) { bad.toString() }
            check(ClientException.Closed("the client is closed").toString() == "the client is closed")
            check("${ClientException.TooLarge(10uL, 5uL, SizeLimit.OUTBOX_MAX_BYTES)}" ==
                "message of 10 bytes exceeds the limit of 5 bytes (outbox.max_bytes)")
            val zero = expectThrows<ClientException.InvalidConfig> {
                Client(ClientConfig("ws://127.0.0.1:9/").backoffInitialMs(0uL))
            }
            check(zero.field == "backoff.initial") { zero }
            for ((config, field) in listOf(
                ClientConfig("ws://127.0.0.1:9/").eventCapacity(0u) to "event_capacity",
                ClientConfig("ws://127.0.0.1:9/").listenerQueueCapacity(0u) to "listener_queue_capacity",
                // Over 65,536: refused, where 2^31 used to abort the process allocating the queue.
                ClientConfig("ws://127.0.0.1:9/").listenerQueueCapacity(65_537u) to "listener_queue_capacity",
                ClientConfig("ws://127.0.0.1:9/").listenerQueueCapacity(1u shl 31) to "listener_queue_capacity",
                ClientConfig("ws://127.0.0.1:9/").listenerQueueCapacity(UInt.MAX_VALUE) to "listener_queue_capacity",
            )) {
                val none = expectThrows<ClientException.InvalidConfig> { Client(config) }
                check(none.field == field) { none }
            }
            Client(ClientConfig("ws://127.0.0.1:9/")).use { raw ->
                val refused = expectThrows<ClientException.NeedsTetherProtocol> { raw.subscribe("room") }
                // `message` (what "${e.message}" and getLocalizedMessage() give) carries the text
                // too, also for a variant with no data of its own: it used to be empty.
                check("this needs the Tether protocol (the client is in raw mode)" in (refused.message ?: "")) { "message: ${refused.message}" }
                check(refused.reason == "this needs the Tether protocol (the client is in raw mode)") { refused }
                expectThrows<ClientException.NeedsTetherProtocol> { raw.document("list") }
                // Not `null` ("not subscribed"), which an app may wait on for ever.
                expectThrows<ClientException.NeedsTetherProtocol> { raw.presence("room") }
                val arg = expectThrows<ClientException.InvalidArgument> { raw.send(json("{not json")) }
                check(arg.argument == "payload") { arg }
                check(raw.state() == ConnectionState.Idle)
            }
            // A message too large names the limit: its own, or the whole outbox's when smaller.
            Client(ClientConfig("ws://127.0.0.1:9/").maxMessageBytes(8uL).outboxMaxBytes(4uL)).use { small ->
                val big = expectThrows<ClientException.TooLarge> { small.send(Payload.Text("x".repeat(9))) }
                check(big.size == 9uL && big.max == 8uL && big.limit == SizeLimit.MAX_MESSAGE_BYTES) { big }
                check(big.toString() == "message of 9 bytes exceeds the limit of 8 bytes (max_message_bytes)") { big }
                val fuller = expectThrows<ClientException.TooLarge> { small.send(Payload.Text("x".repeat(6))) }
                check(fuller.limit == SizeLimit.OUTBOX_MAX_BYTES && fuller.max == 4uL) { fuller }
            }
        }

        test("log sink: the client's records at the chosen level, on a library thread; none once removed") {
            val records = java.util.concurrent.LinkedBlockingQueue<Pair<LogRecord, String>>()
            val sink = object : LogSink {
                override fun log(record: LogRecord) {
                    records.put(record to Thread.currentThread().name)
                }
            }
            val url = "ws://127.0.0.1:${freePort()}/"
            setLogSink(sink, LogLevel.INFO)
            Client(ClientConfig(url).backoffInitialMs(50uL)).use { c ->
                try {
                    c.connect()
                    val seen = mutableListOf<Pair<LogRecord, String>>()
                    val deadline = System.nanoTime() + 10_000_000_000
                    // Other clients may still be logging: this client's records carry its URL.
                    val mine = { r: LogRecord -> "reconnect scheduled" in r.message && "url=$url" in r.message }
                    while (seen.none { mine(it.first) }) {
                        check(System.nanoTime() < deadline) { "no reconnect record: $seen" }
                        records.poll(100, TimeUnit.MILLISECONDS)?.let { seen.add(it) }
                    }
                    val (record, thread) = seen.first { mine(it.first) }
                    check(record.level == LogLevel.INFO && record.target.startsWith("tether")) { record }
                    // Delivered on the library's log thread (JNA names it Thread-N), not ours.
                    check(thread != "main") { thread }
                    check(seen.none { it.first.level == LogLevel.DEBUG }) { seen }

                    setLogSink(null, LogLevel.INFO)
                    delay(200) // records queued before the removal may still arrive
                    records.clear()
                    delay(500) // more reconnects are scheduled meanwhile (50 ms backoff)
                    check(records.isEmpty()) { records.toList() }
                } finally {
                    setLogSink(null, LogLevel.INFO)
                    c.shutdownBlocking()
                }
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

        test("listener: lives until cancel(), not as long as its handle; close() without shutdown() stops it at once") {
            val c = Client(ClientConfig("ws://127.0.0.1:9/").wireProtocol(WireProtocol.TETHER))
            val rec = Recorder()
            // What garbage collection of an ignored handle does: releases the Rust object.
            c.addListener(rec).close()
            rec.next("snapshot") { it is ClientEvent.StateChanged }
            val doc = c.document("kt-lifetime")
            doc.set("milk", "2")
            rec.next("DocumentChanged after the handle was released") { it is ClientEvent.DocumentChanged }
            // A released UniFFI object refuses every call.
            val released = c.addListener(Recorder())
            released.close()
            expectThrows<IllegalStateException> { released.cancel() }

            val handle = c.addListener(Recorder())
            val seen = rec.mark()
            c.close() // no shutdown(): the listeners are stopped and released here, no final events
            check(handle.isCancelled())
            delay(200)
            check(rec.snapshot().size == seen) { "events after close(): ${rec.snapshot().drop(seen)}" }
            expectThrows<IllegalStateException> { c.state() }
            handle.close()
            doc.close()
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
                    val timedOut = expectThrows<ClientException.AckTimedOut> { c.sendAcked(json("1"), 300uL) }
                    val took = (System.nanoTime() - t0) / 1_000_000
                    check(took in 250..5_000) { "timed out after $took ms" }
                    // Never written, so the error says it expired, and names the message the
                    // Dropped event (the timeout was its TTL) names.
                    check(timedOut.status == Unacked.EXPIRED) { timedOut }
                    val timedOutId = timedOut.messageId
                    rec.next("the timed-out send dropped") {
                        it is ClientEvent.Dropped && it.reason == DropReason.Expired && timedOutId in it.ids
                    }
                    val job = launch(Dispatchers.Default) { c.publishAcked("room", json("2"), null) }
                    delay(100)
                    job.cancel()
                    withTimeout(2_000) { job.join() }
                    check(job.isCancelled)
                    check(c.stats().outboxLen == 1uL) { c.stats() } // no timeout: it still waits
                    // A cancelled request is given up, not only its wait: it leaves the outbox
                    // and is never sent (a screen the user left needs no answer).
                    val asked = launch(Dispatchers.Default) { c.request(json("7"), null) }
                    val queuedBy = System.nanoTime() + 2_000_000_000L
                    while (c.stats().outboxLen < 2uL && System.nanoTime() < queuedBy) delay(10)
                    check(c.stats().outboxLen == 2uL) { "the request is queued: ${c.stats()}" }
                    asked.cancel()
                    withTimeout(2_000) { asked.join() }
                    val goneBy = System.nanoTime() + 2_000_000_000L
                    while (c.stats().outboxLen > 1uL && System.nanoTime() < goneBy) delay(10)
                    check(c.stats().outboxLen == 1uL) { "the cancelled request left the outbox: ${c.stats()}" }
                    val id = c.publishWith("room", json("3"), SendOptions(ttlMs = 100uL))
                    val dropped = rec.next("expired by its TTL", 5_000) { it is ClientEvent.Dropped && id in it.ids } as ClientEvent.Dropped
                    check(dropped.reason == DropReason.Expired) { dropped }
                    // The event-driven form of a timeout: AckTimedOut (EXPIRED) before the Dropped.
                    val timed = c.publishWith("room", json("4"), SendOptions(timeoutMs = 100uL))
                    val ended = rec.next("timed out unsent", 5_000) {
                        (it is ClientEvent.AckTimedOut && it.id == timed) || (it is ClientEvent.Dropped && timed in it.ids)
                    }
                    check(ended is ClientEvent.AckTimedOut && ended.status == Unacked.EXPIRED) { ended }
                    rec.next("then dropped", 5_000) { it is ClientEvent.Dropped && timed in it.ids }
                    val refused = expectThrows<ClientException.InvalidArgument> {
                        c.publishWith("room", json("5"), SendOptions(ack = false, timeoutMs = 100uL))
                    }
                    check(refused.argument == "options") { refused }
                    check(c.stats().droppedExpired == 3uL && c.stats().outboxLen == 1uL) { c.stats() }
                    h.cancel()
                    c.shutdown()
                }
            }

            test("relay killed and restarted: reconnect, queued acked messages all delivered") {
                val callsBefore = tokens.calls.get()
                val slow = Recorder()
                // A client whose backoff is long: coming back online (offline, then online) must skip the wait.
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
                    // The same delay, relative: what was left when the state was converted.
                    check(waiting.retryInMs in 20_000uL..30_000uL && waiting.retryInMs.toLong() - inMs in -50..2_000) {
                        "D retries in ${waiting.retryInMs} ms, at ${waiting.retryAtUnixMs} ($inMs ms from now)"
                    }

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

                    // D is still waiting out its 30 s backoff: the network coming back skips it
                    // (any online report: a handover reports the new network before losing the
                    // old one; only a server's minimum would hold it).
                    check(d.state() is ConnectionState.Waiting) { d.state() }
                    d.networkChanged(false)
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
                val closed = expectThrows<ClientException.Closed> { a.send(json("1")) }
                check("the client is closed" in "send failed: ${closed.message}") { "message: ${closed.message}" }
                check(closed.reason == "the client is closed") { closed }
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

        documents(relay, tokens, ::test)
    } finally {
        relay.stop(graceful = false)
    }
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
