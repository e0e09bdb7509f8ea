/* The Swift bindings' C header (TetherFFI.h), compiled with gcc and linked against the
 * library: the ABI the generated Swift code calls, checked without a Swift compiler.
 * It calls what Swift would: the contract version, a free function returning a string, an
 * object constructor, a method on a cloned handle, an enum argument, a fallible constructor,
 * a method returning an object (a shared document, used offline), integer and optional
 * returns, a thrown error, and the frees.
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

/* A string argument: UTF-8 bytes in a buffer the library allocates (and frees when called). */
static RustBuffer string(const char *s, RustCallStatus *status) {
    ForeignBytes bytes = {(int32_t)strlen(s), (const uint8_t *)s};
    return ffi_tether_ffi_rustbuffer_from_bytes(bytes, status);
}

/* An `Option<String>` return: a 1 tag byte, then a big-endian i32 length and the bytes. */
static int optional_string_equals(RustBuffer b, const char *s) {
    size_t n = strlen(s);
    if (b.len != 5 + n || b.data[0] != 1) return 0;
    uint32_t len = ((uint32_t)b.data[1] << 24) | ((uint32_t)b.data[2] << 16) |
                   ((uint32_t)b.data[3] << 8) | (uint32_t)b.data[4];
    return len == n && memcmp(b.data + 5, s, n) == 0;
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

    /* An enum argument is a buffer holding its variant's 1-based index (big-endian i32):
     * WireProtocol.tether is 2. The builder method consumes its handle and returns a new one. */
    const uint8_t tether[4] = {0, 0, 0, 2};
    ForeignBytes tether_bytes = {4, tether};
    RustBuffer protocol = ffi_tether_ffi_rustbuffer_from_bytes(tether_bytes, &status);
    uint64_t tether_config = uniffi_tether_ffi_fn_method_clientconfig_wire_protocol(
        uniffi_tether_ffi_fn_clone_clientconfig(config, &status), protocol, &status);
    check(status.code == 0 && tether_config != 0, "ClientConfig.wireProtocol(.tether)");

    /* Never connected: the document works locally (its changes wait in the outbox). */
    uint64_t client = uniffi_tether_ffi_fn_constructor_client_new(tether_config, &status);
    check(status.code == 0 && client != 0, "Client(config:)");
    uint64_t doc = uniffi_tether_ffi_fn_method_client_document(
        uniffi_tether_ffi_fn_clone_client(client, &status), string("list", &status), &status);
    check(status.code == 0 && doc != 0, "client.document(channel:)");
    uint64_t id = uniffi_tether_ffi_fn_method_document_set(
        uniffi_tether_ffi_fn_clone_document(doc, &status), string("milk", &status),
        string("{\"n\":2}", &status), &status);
    check(status.code == 0 && id > 0, "document.set(key:json:)");
    uint64_t id2 = uniffi_tether_ffi_fn_method_document_increment(
        uniffi_tether_ffi_fn_clone_document(doc, &status), string("count", &status), 3, &status);
    check(status.code == 0 && id2 == id + 1, "document.increment(key:by:)");
    RustBuffer value = uniffi_tether_ffi_fn_method_document_get(
        uniffi_tether_ffi_fn_clone_document(doc, &status), string("milk", &status), &status);
    check(status.code == 0 && optional_string_equals(value, "{\"n\":2}"), "document.get(key:)");
    ffi_tether_ffi_rustbuffer_free(value, &status);
    uint32_t pending = uniffi_tether_ffi_fn_method_document_pending(
        uniffi_tether_ffi_fn_clone_document(doc, &status), &status);
    check(status.code == 0 && pending == 2, "document.pending()");
    RustBuffer whole = uniffi_tether_ffi_fn_method_document_snapshot_json(
        uniffi_tether_ffi_fn_clone_document(doc, &status), &status);
    check(status.code == 0 && buffer_equals(whole, "{\"count\":3,\"milk\":{\"n\":2}}"),
          "document.snapshotJson()");
    ffi_tether_ffi_rustbuffer_free(whole, &status);
    /* A refused change: status code 1 (a declared error), the error serialized in errorBuf. */
    RustCallStatus refused = {0};
    uniffi_tether_ffi_fn_method_document_insert(uniffi_tether_ffi_fn_clone_document(doc, &status),
                                                string("count", &status), string("0", &status),
                                                &refused);
    check(refused.code == 1 && refused.errorBuf.len > 0, "document.insert(existing) throws");
    ffi_tether_ffi_rustbuffer_free(refused.errorBuf, &status);

    uniffi_tether_ffi_fn_free_document(doc, &status);
    uniffi_tether_ffi_fn_free_client(client, &status);
    uniffi_tether_ffi_fn_free_clientconfig(config, &status);
    check(status.code == 0, "free Document, Client, ClientConfig");

    printf("%d passed, %d failed\n", 14 - failures, failures);
    return failures == 0 ? 0 : 1;
}
