// onnxruntime-web's wasm module factory, given a binary compiled beforehand.
//
// onnxruntime-web fetches and compiles its 14 MB binary at its first session, once the model
// files are in. The page instead fetches it as it opens (index.html preloads it) and compiles it
// (compileRuntime) while model.json and the model files download, and points onnxruntime-web's
// env.wasm.wasmPaths.mjs here; onnxruntime-web then calls this module's factory, which
// instantiates the compiled binary. WebAssembly.compile on the whole binary rather than
// compileStreaming: streaming decodes the binary on this thread, where it held up the model
// files' requests by about 0.2 s on the 2-core test machine.
// Worker threads (a cross-origin isolated page on 3 or more cores) load onnxruntime-web's own
// factory and receive the compiled binary from this thread, as they would without this module.
import createModule from "/ort/ort-wasm-simd-threaded.mjs";

let compiled = null;

/** Start fetching and compiling the wasm binary at `url` (once); resolves to the WebAssembly.Module, or null where that failed. */
export function compileRuntime(url) {
  compiled ??= fetch(url)
    .then((response) => response.arrayBuffer())
    .then((binary) => WebAssembly.compile(binary))
    .catch(() => null);
  return compiled;
}

/** Create onnxruntime-web's wasm module as its own factory does, from the binary compiled already if there is one. */
export default async function createRuntime(config) {
  const module = await compiled;
  if (!module) return createModule(config); // it fetches and compiles the binary itself
  return createModule({
    ...config,
    instantiateWasm(imports, receive) {
      WebAssembly.instantiate(module, imports).then((instance) => receive(instance, module));
      return {}; // the exports come through `receive`
    },
  });
}
