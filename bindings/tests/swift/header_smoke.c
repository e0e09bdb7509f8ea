/* The Swift bindings' C header (TetherFFI.h), compiled with gcc and linked against the
 * library: the ABI the generated Swift code calls, checked without a Swift compiler.
 * It calls what Swift would: the contract version, a free function returning a string, an
 * object constructor, a method on a cloned handle, and the frees.
 * Build: see scripts/test-bindings. Prints `ok ...` lines; exits non-zero on a mismatch. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "TetherFFI.h"

#ifndef EXPECTED_VERSION
#error "compile with -DEXPECTED_VERSION='\"x.y.z\"'"
#endif
#ifndef EXPECTED_CONTRACT
#error "compile with -DEXPECTED_CONTRACT=N"
#endif

static int failures = 0;

static void check(int ok, const char *what) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

static int buffer_equals(RustBuffer b, const char *s) {
    return b.len == strlen(s) && memcmp(b.data, s, b.len) == 0;
}

int main(void) {
    RustCallStatus status = {0};

    check(ffi_tether_ffi_uniffi_contract_version() == EXPECTED_CONTRACT, "contract version");

    RustBuffer version = uniffi_tether_ffi_fn_func_sdk_version(&status);
    check(status.code == 0 && buffer_equals(version, EXPECTED_VERSION), "sdk_version()");
    ffi_tether_ffi_rustbuffer_free(version, &status);

    const char *url = "ws://127.0.0.1:9000/";
    ForeignBytes bytes = {(int32_t)strlen(url), (const uint8_t *)url};
    RustBuffer arg = ffi_tether_ffi_rustbuffer_from_bytes(bytes, &status);
    uint64_t config = uniffi_tether_ffi_fn_constructor_clientconfig_new(arg, &status);
    check(status.code == 0 && config != 0, "ClientConfig(url)");

    /* A method call consumes one handle: clone it first, as the Swift code does. */
    uint64_t clone = uniffi_tether_ffi_fn_clone_clientconfig(config, &status);
    RustBuffer got = uniffi_tether_ffi_fn_method_clientconfig_url(clone, &status);
    check(status.code == 0 && buffer_equals(got, url), "ClientConfig.url()");
    ffi_tether_ffi_rustbuffer_free(got, &status);
    uniffi_tether_ffi_fn_free_clientconfig(config, &status);
    check(status.code == 0, "free ClientConfig");

    printf("%d passed, %d failed\n", 5 - failures, failures);
    return failures == 0 ? 0 : 1;
}
