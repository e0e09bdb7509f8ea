// What bindings/README.md's Kotlin examples leave to the app around them (its main-thread
// Handler, session, user and views), declared just enough for the examples to compile. With
// Lifecycle.kt, Log.kt and Json.kt (Android's own classes, reduced to what the examples call),
// scripts/test-bindings compiles the examples, extracted into package `readme`, on the desktop
// JVM against the generated bindings. Compile-only: the examples are not run, so no body here
// is ever called.

package readme

object ui {
    fun post(action: () -> Unit): Boolean = compileOnly()
}

object session {
    suspend fun freshToken(force: Boolean): String = compileOnly()
}

val userId: String get() = compileOnly()

fun showState(state: Any?): Unit = compileOnly()
fun showRetry(delayMs: Any?): Unit = compileOnly()
fun show(vararg what: Any?): Unit = compileOnly()
fun showAll(values: Any?): Unit = compileOnly()
fun hide(key: String): Unit = compileOnly()
fun toast(text: String): Unit = compileOnly()
fun markSaved(keys: List<String>): Unit = compileOnly()

internal fun compileOnly(): Nothing = throw UnsupportedOperationException("compile-only stub")
