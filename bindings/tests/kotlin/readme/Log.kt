// android.util.Log, reduced to what bindings/README.md's Kotlin examples call (see App.kt).

package android.util

object Log {
    const val DEBUG = 3
    const val INFO = 4
    const val WARN = 5
    const val ERROR = 6

    fun println(priority: Int, tag: String, msg: String): Int =
        throw UnsupportedOperationException("compile-only stub")
}
