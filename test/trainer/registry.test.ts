// Picking the algorithm by a config's `"algorithm": { "name" }`: LightningRL by default (with its
// options), SFT by name, a registered one in one line, and a clear error for an unknown name.
import { describe, expect, it } from "vitest";
import type { Algorithm } from "../../src/trainer/algorithm.ts";
import { LightningRL } from "../../src/trainer/lightning-rl.ts";
import { algorithmNames, createAlgorithm, registerAlgorithm } from "../../src/trainer/registry.ts";
import { Sft } from "../../src/trainer/sft-algorithm.ts";

describe("algorithm registry", () => {
  it("builds LightningRL by default and SFT by name, with the config's options", () => {
    const rl = createAlgorithm({ algorithm: { samplesPerTask: 2, async: { maxStaleness: 2 } }, valEvery: 3 });
    expect(rl).toBeInstanceOf(LightningRL);
    expect((rl as LightningRL).config.samplesPerTask).toBe(2);
    expect((rl as LightningRL).config.async).toEqual({ maxStaleness: 2, isTruncation: 2, lookahead: 2 });
    expect((rl as LightningRL).options.valEvery).toBe(3);
    expect(createAlgorithm({})).toBeInstanceOf(LightningRL);
    const sft = createAlgorithm({ algorithm: { name: "sft", batchSize: 4 }, optimizer: { lr: 0.01 }, lora: "full" });
    expect(sft).toBeInstanceOf(Sft);
    expect((sft as Sft).options).toMatchObject({ algorithm: { batchSize: 4 }, lr: 0.01, lora: "full" });
  });

  it("takes a new algorithm in one line and names the known ones for an unknown name", async () => {
    expect(() => createAlgorithm({ algorithm: { name: "nope" } })).toThrow(
      /unknown algorithm "nope".*lightningrl, sft/,
    );
    const calls: unknown[] = [];
    const custom: Algorithm = {
      name: "custom",
      async fit(_ctx, data, steps) {
        calls.push({ data, steps });
        return { steps, history: [], validation: [], checkpoint: null };
      },
    };
    registerAlgorithm("custom", (setup) => {
      calls.push(setup.algorithm);
      return custom;
    });
    expect(algorithmNames()).toContain("custom");
    expect(createAlgorithm({ algorithm: { name: "custom", beam: 4 } })).toBe(custom);
    expect(calls).toEqual([{ name: "custom", beam: 4 }]);
  });
});
