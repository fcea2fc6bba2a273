// Prints one JSON line describing the WebGPU adapter the npm `webgpu` package (Dawn) finds,
// or {"ok":false} when there is none. Used by setup-gpu.sh to decide whether to install lavapipe.
import { create, globals } from "webgpu";

Object.assign(globalThis, globals);
const gpu = create([]);
try {
  const adapter = await gpu.requestAdapter();
  if (!adapter) {
    console.log(JSON.stringify({ ok: false }));
  } else {
    const info = adapter.info ?? {};
    console.log(
      JSON.stringify({
        ok: true,
        vendor: info.vendor,
        architecture: info.architecture,
        device: info.device,
        description: info.description,
        features: [...adapter.features],
      }),
    );
  }
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e) }));
}
process.exit(0);
