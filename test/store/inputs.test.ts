// The hand-written JSON check that guards every JSON field of the store (messages, inputs,
// metadata): what it accepts must survive JSON.stringify unchanged, and what it rejects must not.
import { describe, expect, it } from "vitest";
import { isJsonValue } from "../../src/store/index.ts";

describe("isJsonValue", () => {
  it("accepts plain JSON, including nested and null-prototype objects", () => {
    const nested = { a: [1, "two", null, { b: true, c: [[-0.5e-3]] }], d: { e: "" } };
    for (const value of [null, 0, -1.5, "text", true, [], {}, nested, Object.create(null)]) {
      expect(isJsonValue(value), JSON.stringify(value)).toBe(true);
    }
    expect(isJsonValue({ role: "assistant", content: "x", tool_calls: undefined })).toBe(true);
  });

  it("rejects what JSON cannot carry faithfully", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const rejected: [unknown, string][] = [
      [undefined, "undefined"],
      [Number.NaN, "NaN"],
      [Number.POSITIVE_INFINITY, "Infinity"],
      [[1, undefined], "undefined in an array"],
      [{ when: new Date(0) }, "Date"],
      [new Uint32Array(2), "typed array"],
      [{ f: () => 1 }, "function"],
      [{ big: 1n }, "bigint"],
      [new Map(), "Map"],
      [deep, "nesting deeper than 64"],
      [cyclic, "a cycle"],
    ];
    for (const [value, label] of rejected) expect(isJsonValue(value), label).toBe(false);
  });
});
