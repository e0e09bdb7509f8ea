//! `uniffi-bindgen generate target/debug/libtether_ffi.so --language kotlin --out-dir DIR`:
//! UniFFI's generator, built from the workspace so its version always matches the library's
//! (UniFFI's documented pattern). See scripts/bindings-generate.

fn main() {
    uniffi::uniffi_bindgen_main()
}
