// A held-out text for engine-vs-llama.cpp comparisons: not in the tiny tokenizer's training
// corpus (src/model/tiny-corpus.ts), so it exercises merges and byte fallbacks the model never saw.
export const HELD_OUT_TEXT =
  "Lighthouses once burned whale oil, then kerosene, and finally electric lamps behind huge Fresnel lenses. " +
  "A keeper climbed the spiral stairs at dusk, trimmed the wick, wound the clockwork that turned the lens, " +
  "and logged the weather every four hours until dawn. Ships counted the flashes to know which coast they saw.";
