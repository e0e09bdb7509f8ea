// Pairs a wasm module with its wasm-bindgen glue, so that the glue refuses any other module.
//
//   node pair-module.mjs <module.wasm> <glue.js>      (rewrites both in place)
//
// Each entry of tether-web has its own module and glue, and both modules import the same
// functions under the same minified names, so the other entry's module (or another build's)
// instantiates without complaint and the glue then calls its exports by names that mean
// something else there: an opaque failure at best. So the module gets an empty custom section
// named after a hash of its content (32 bits: enough to tell builds apart by accident, and
// each byte is paid for in every download), and the glue's `__wbg_finalize_init(instance, module)`
// first checks that the module has it, before any export is used; if not it throws
// `wrong_module:<message>`, which tether.js's init() turns into a TetherError.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const [wasmFile, glueFile] = process.argv.slice(2);
if (!glueFile) {
  console.error('usage: node pair-module.mjs <module.wasm> <glue.js>');
  process.exit(2);
}

const fail = (message) => {
  console.error(`pair-module: ${message}`);
  process.exit(1);
};

// Unsigned LEB128, as wasm writes sizes.
function leb128(n) {
  const out = [];
  do {
    out.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0));
    n >>>= 7;
  } while (n > 0);
  return out;
}

// An empty custom section (id 0) called `name`: valid anywhere in a module, ignored by engines.
function customSection(name) {
  const nameBytes = [...Buffer.from(name, 'utf8')];
  const body = [...leb128(nameBytes.length), ...nameBytes];
  return Buffer.from([0, ...leb128(body.length), ...body]);
}

const wasm = readFileSync(wasmFile);
const marker = `tether:${createHash('sha256').update(wasm).digest('hex').slice(0, 8)}`;
const paired = Buffer.concat([wasm, customSection(marker)]);
if (WebAssembly.Module.customSections(new WebAssembly.Module(paired), marker).length !== 1) {
  fail('the marked module does not show its marker');
}

const opening = 'function __wbg_finalize_init(instance, module) {\n';
const glue = readFileSync(glueFile, 'utf8');
if (glue.split(opening).length !== 2) fail(`${opening.trim()} is not in the glue exactly once`);
const message = `wrong_module:not the ${path.basename(wasmFile)} this entry was built with`;
const check = `    if (!WebAssembly.Module.customSections(module, ${JSON.stringify(marker)}).length) throw ${JSON.stringify(message)};\n`;
writeFileSync(wasmFile, paired);
writeFileSync(glueFile, glue.replace(opening, opening + check));
console.log(`pair-module: ${path.basename(wasmFile)} marked ${marker}; its glue refuses other modules`);
