// `fulgur serve --quantize` and `--quantize-head`: the flag reaches the options loadModel gets, and a bad value is
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

  it("takes --quantize-head (or FULGUR_QUANTIZE_HEAD=1) on its own or beside --quantize", () => {
    expect(parseServerArgs([]).quantizeHead).toBe(false);
    expect(parseServerArgs(["--quantize-head"]).quantizeHead).toBe(true);
    const both = parseServerArgs(["--quantize", "int4", "--quantize-head"]);
    expect([both.quantize, both.quantizeHead]).toEqual(["int4", true]);
    process.env.FULGUR_QUANTIZE_HEAD = "1";
    try {
      expect(parseServerArgs([]).quantizeHead).toBe(true);
    } finally {
      delete process.env.FULGUR_QUANTIZE_HEAD;
    }
    expect(SERVER_USAGE).toMatch(/--quantize-head/);
  });
});
