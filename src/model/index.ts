// The model package: HF checkpoint formats (config, safetensors, PEFT), tokenizers, chat templates
// and tiny test models. Add new modules here as plain re-export lines.
export * from "./bpe.ts";
export * from "./chat-template.ts";
export * from "./config.ts";
export * from "./engine.ts";
export * from "./loader.ts";
export * from "./lora.ts";
export * from "./model.ts";
export * from "./peft.ts";
export * from "./safetensors.ts";
export * from "./safetensors-write.ts";
export * from "./scheduler.ts";
export * from "./tiny.ts";
export * from "./tiny-corpus.ts";
export * from "./tokenizer.ts";
