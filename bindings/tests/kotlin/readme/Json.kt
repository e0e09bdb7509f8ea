// org.json.JSONObject, reduced to what bindings/README.md's Kotlin examples call (see App.kt).

package org.json

class JSONObject {
    constructor(map: Map<*, *>) { compileOnly() }
    constructor(json: String) { compileOnly() }

    fun put(name: String, value: Boolean): JSONObject = compileOnly()
    fun getString(name: String): String = compileOnly()
}

private fun compileOnly(): Nothing = throw UnsupportedOperationException("compile-only stub")
