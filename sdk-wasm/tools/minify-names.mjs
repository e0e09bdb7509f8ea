// Renames the wasm-bindgen glue's imports and exports to the short names wasm-opt gave them.
//
//   node minify-names.mjs <mapping.json> <module.wasm> <glue.js> <out.js>
//
// `wasm-opt --minify-imports-and-exports-and-modules` shortens every import module, import
// name and export name of the module (they are ~55 hashed names such as
// `__wbg_set_onmessage_45059e68f5e382fa`, stored once in the module and once in the glue) and
// prints the old → new mapping. This applies the same mapping to the glue: the import object's
// keys, its module key, and every `wasm.<export>` access. It fails, rather than ship a module
// and glue that disagree, when any name in the mapping is not found exactly where expected.
import { readFileSync, writeFileSync } from 'node:fs';

const [mappingFile, wasmFile, glueFile, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error('usage: node minify-names.mjs <mapping.json> <module.wasm> <glue.js> <out.js>');
  process.exit(2);
}

const fail = (message) => {
  console.error(`minify-names: ${message}`);
  process.exit(1);
};

// wasm-opt prints the mapping as JSON on stdout (nothing else with these flags).
const text = readFileSync(mappingFile, 'utf8');
const mapping = JSON.parse(text.slice(text.indexOf('{')));
const imports = new Map(mapping.imports.map(([, from, to]) => [from, to]));
const exports = new Map(mapping.exports);

// The new module name is not in the mapping: read it from the minified module itself.
const module = new WebAssembly.Module(readFileSync(wasmFile));
const oldModules = new Set(mapping.imports.map(([m]) => m));
const newModules = new Set(WebAssembly.Module.imports(module).map((i) => i.module));
if (oldModules.size !== 1 || newModules.size !== 1) {
  fail(`expected one import module, found ${[...oldModules]} → ${[...newModules]}`);
}
const [oldModule] = oldModules;
const [newModule] = newModules;

let glue = readFileSync(glueFile, 'utf8');
const quote = JSON.stringify;

// The import object: `        <name>: function(` members of `import0`.
let renamedImports = 0;
glue = glue.replace(/^(\s+)([A-Za-z_$][\w$]*)(: function\()/gm, (all, indent, name, rest) => {
  if (!imports.has(name)) return all;
  renamedImports += 1;
  return `${indent}${quote(imports.get(name))}${rest}`;
});
if (renamedImports !== imports.size) {
  fail(`renamed ${renamedImports} of ${imports.size} imports: the glue's layout changed`);
}

const moduleKey = `${quote(oldModule)}: import0`;
if (glue.split(moduleKey).length !== 2) fail(`the module key ${moduleKey} is not there once`);
glue = glue.replace(moduleKey, `${quote(newModule)}: import0`);

// Exports: every `wasm.<name>` access.
const used = new Set();
glue = glue.replace(/\bwasm\.([A-Za-z_$][\w$]*)/g, (all, name) => {
  if (!exports.has(name)) fail(`the glue uses export ${name}, which the mapping does not name`);
  used.add(name);
  return `wasm[${quote(exports.get(name))}]`;
});
// Exports the glue never touches by name are fine (e.g. ones only the start function uses).
console.error(`minify-names: ${imports.size} imports, ${used.size} of ${exports.size} exports renamed`);
writeFileSync(outFile, glue);
