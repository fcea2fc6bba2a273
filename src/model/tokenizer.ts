// ModelTokenizer: a checkpoint's tokenizer as the engine and proxy use it. Wraps
// @huggingface/tokenizers (tokenizer.json) for encode/decode, renders tokenizer_config.json's
// chat_template for prompts, and gathers the ids that end generation from generation_config.json,
// config.json and tokenizer_config.json.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { type ChatMessage, type RenderOptions, renderChatTemplate, type ToolSpec } from "./chat-template.ts";

type Json = Record<string, unknown>;

export interface ChatTemplateOptions {
  tools?: ToolSpec[] | null;
  /** Append the assistant turn header so the model continues as the assistant (default false, as in HF). */
  addGenerationPrompt?: boolean;
  /** Further template variables. */
  extra?: Record<string, unknown>;
}

export interface TokenizerSources {
  /** Parsed tokenizer.json. */
  tokenizer: Json;
  /** Parsed tokenizer_config.json ({} when absent). */
  tokenizerConfig?: Json;
  /** Parsed generation_config.json, if any. */
  generationConfig?: Json;
  /** Parsed config.json, if any (for eos_token_id). */
  modelConfig?: Json;
  /** A chat template that overrides tokenizer_config's (e.g. from chat_template.jinja). */
  chatTemplate?: string;
}

/** tokenizer_config stores special tokens as strings or as AddedToken dicts ({content: ...}). */
function tokenString(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") return (v as Json).content as string;
  return null;
}

function idList(v: unknown): number[] {
  if (typeof v === "number") return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number");
  return [];
}

/** tokenizer_config may hold one template or a list of named ones; "default" wins. */
function pickChatTemplate(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const named = v as { name?: string; template?: string }[];
    const chosen = named.find((t) => t.name === "default") ?? named[0];
    return typeof chosen?.template === "string" ? chosen.template : null;
  }
  return null;
}

async function readJsonIfPresent(path: string): Promise<Json | undefined> {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(await readFile(path, "utf8")) as Json;
  } catch (e) {
    throw new Error(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

export class ModelTokenizer {
  readonly chatTemplate: string | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  /** Ids that end generation, generation_config's first (Qwen chat: <|im_end|>, <|endoftext|>). */
  readonly eosTokenIds: number[];
  /** Ids of added tokens marked special (dropped by decode with skipSpecialTokens). */
  readonly specialTokenIds: number[];
  /** Number of token ids the tokenizer can produce (max id + 1; the model's vocab may be padded larger). */
  readonly vocabSize: number;
  /** tokenizer.json's `decoder` section (null when absent): how token strings map to bytes. */
  readonly decoderConfig: Json | null;
  /** Added tokens (special or not) by id, with their literal text. */
  readonly addedTokens: ReadonlyMap<number, string>;
  private readonly tokenizer: Tokenizer;
  private readonly cleanUpSpaces: boolean;

  constructor(sources: TokenizerSources) {
    const config = sources.tokenizerConfig ?? {};
    if (typeof sources.tokenizer !== "object" || sources.tokenizer === null || !("model" in sources.tokenizer)) {
      throw new Error('tokenizer.json must be an object with a "model" section');
    }
    this.tokenizer = new Tokenizer(sources.tokenizer, config);
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;
    this.chatTemplate = sources.chatTemplate ?? pickChatTemplate(config.chat_template);
    this.bosToken = tokenString(config.bos_token);
    this.eosToken = tokenString(config.eos_token);

    const vocab = this.tokenizer.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    const decoder = (sources.tokenizer as Json).decoder;
    this.decoderConfig = decoder && typeof decoder === "object" ? (decoder as Json) : null;
    this.addedTokens = new Map([...this.tokenizer.get_added_tokens_decoder()].map(([id, t]) => [id, t.content]));
    this.specialTokenIds = [...this.tokenizer.get_added_tokens_decoder()]
      .filter(([, t]) => t.special)
      .map(([id]) => id)
      .sort((a, b) => a - b);

    const eos = [...idList(sources.generationConfig?.eos_token_id), ...idList(sources.modelConfig?.eos_token_id)];
    const eosFromConfig = this.eosToken === null ? undefined : this.tokenToId(this.eosToken);
    if (eosFromConfig !== undefined) eos.push(eosFromConfig);
    this.eosTokenIds = [...new Set(eos)];
  }

  /**
   * Loads tokenizer.json (required), tokenizer_config.json, chat_template.jinja,
   * generation_config.json and config.json (all optional) from a model directory.
   */
  static async load(dir: string): Promise<ModelTokenizer> {
    const tokenizer = await readJsonIfPresent(join(dir, "tokenizer.json"));
    if (!tokenizer) throw new Error(`no tokenizer.json in ${dir}: expected a Hugging Face tokenizer`);
    const jinjaPath = join(dir, "chat_template.jinja");
    return new ModelTokenizer({
      tokenizer,
      tokenizerConfig: await readJsonIfPresent(join(dir, "tokenizer_config.json")),
      generationConfig: await readJsonIfPresent(join(dir, "generation_config.json")),
      modelConfig: await readJsonIfPresent(join(dir, "config.json")),
      chatTemplate: existsSync(jinjaPath) ? await readFile(jinjaPath, "utf8") : undefined,
    });
  }

  /** Token ids of `text`; addSpecialTokens (default true, like HF) applies the post-processor (e.g. BOS). */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    if (typeof text !== "string") throw new Error(`encode expects a string, got ${typeof text}`);
    return this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** Text of `ids`; skipSpecialTokens drops added tokens marked special. */
  decode(ids: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
    const list = Array.from(ids);
    if (list.length === 0) return "";
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new Error(`decode: token id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
      }
    }
    return this.tokenizer.decode(list, {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  /** Renders the chat template for `messages` (OpenAI shape), as transformers' apply_chat_template(tokenize=False). */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (!this.chatTemplate) {
      throw new Error("this tokenizer has no chat_template (tokenizer_config.json or chat_template.jinja)");
    }
    const render: RenderOptions = {
      tools: options.tools ?? null,
      addGenerationPrompt: options.addGenerationPrompt ?? false,
      bosToken: this.bosToken,
      eosToken: this.eosToken,
      extra: options.extra,
    };
    return renderChatTemplate(this.chatTemplate, messages, render);
  }

  /** Token ids of the rendered chat; like transformers, the template supplies all special tokens. */
  encodeChat(messages: ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }
}
