// androidx.lifecycle, reduced to what bindings/README.md's Kotlin examples call (see App.kt).

package androidx.lifecycle

import kotlinx.coroutines.CoroutineScope

abstract class ViewModel {
    protected open fun onCleared() {}
}

val ViewModel.viewModelScope: CoroutineScope
    get() = throw UnsupportedOperationException("compile-only stub")
