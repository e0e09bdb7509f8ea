#!/usr/bin/env python3
"""Groups `twiggy top --format csv` of a tether-wasm module into the shares docs/performance.md
lists (shallow sizes by item name; names from the wasm-bindgen output, before wasm-opt).

    twiggy top -n 100000 --format csv target/bindgen/tether_wasm_bg.wasm | tools/twiggy-groups.py
"""
import collections
import csv
import re
import sys

# First match wins, in this order.
GROUPS = [
    ("data", r"^data segment"),
    ("the driver (tether_wasm)", r"tether_wasm|WasmClient|wasmclient"),
    ("wasm-bindgen, js-sys, web-sys glue", r"wasm_bindgen|js_sys|web_sys|externref|__wbg|__wbindgen"),
    ("engine: JSON module", r"tether_core\[[0-9a-f]+\]::json"),
    ("engine: protocol codec", r"tether_core\[[0-9a-f]+\]::protocol"),
    ("engine: config and validation", r"tether_core\[[0-9a-f]+\]::config"),
    ("engine: the rest (engine, outbox, channels, heartbeat, backoff, close policy, events)", r"tether_core"),
    ("serde_json Value/Map (B-tree)", r"serde_json|btree"),
    ("formatting, float printing/parsing", r"zmij|itoa|dec2flt|core\[[0-9a-f]+\]::fmt"),
    ("allocator (talc)", r"talc"),
]


def main():
    sizes = collections.Counter()
    total = 0
    for row in csv.DictReader(sys.stdin):
        name = row["Name"]
        if "function names" in name or name.startswith(("Σ", "...")):
            continue
        size = int(row["ShallowSize"])
        total += size
        head = name[:120]
        group = next((g for g, pattern in GROUPS if re.search(pattern, head)), "the rest of std")
        sizes[group] += size
    print(f"{total} B of code and data")
    for group, size in sizes.most_common():
        print(f"{size * 100 / total:5.1f}%  {size:7d} B  {group}")


if __name__ == "__main__":
    main()
