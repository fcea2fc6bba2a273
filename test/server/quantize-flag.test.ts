// `fulgur serve --quantize`: the flag reaches the options loadModel gets, and a bad value is
// refused with a message naming the choices (no GPU needed).
import { describe, expect, it } from "vitest";
import { parseServerArgs, SERVER_USAGE } from "../../src/server.ts";

describe("serve --quantize", () => {
  it("parses int8, int4 and none, and refuses anything else", () => {
    expect(parseServerArgs(["--quantize", "int8"]).quantize).toBe("int8");
    expect(parseServerArgs(["--quantize", "int4"]).quantize).toBe("int4");
    expect(parseServerArgs(["--quantize", "none"]).quantize).toBeUndefined();
    expect(() => parseServerArgs(["--quantize", "fp8"])).toThrow(/--quantize must be int8, int4 or none, got fp8/);
    expect(SERVER_USAGE).toMatch(/--quantize int8\|int4/);
  });
});
