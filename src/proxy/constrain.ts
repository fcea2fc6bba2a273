// Which grammar a request's output must follow on the local engine: a forced tool call
// (`tool_choice` "required" or a named function: one Hermes `<tool_call>` whose arguments follow
// the tool's parameter schema), or JSON (`response_format` json_object / json_schema). Schema
// features the grammar cannot enforce are a 400 naming the feature and where it is, never a 5xx.
// The grammar itself lives in src/model/grammar (it needs the tokenizer).

import { jsonGrammar, type TokenGrammar, type TokenVocabulary, toolCallGrammar } from "../model/grammar/constraint.ts";
import { SchemaError } from "../model/grammar/schema.ts";
import type { ChatRequest, ConstraintKind, ToolChoice } from "./backend.ts";
import { invalidRequest } from "./errors.ts";
import type { ResponseFormatParam, ToolParam } from "./openai-types.ts";

export interface RequestConstraint {
  kind: ConstraintKind;
  grammar: TokenGrammar;
}

/** The tools a `tool_choice` forces a call to; null when it forces none. */
export function forcedTools(tools: ToolParam[] | null, choice: ToolChoice): ToolParam[] | null {
  if (!tools || choice === "none" || choice === "auto") return null;
  if (choice === "required") return tools;
  return tools.filter((t) => t.function.name === choice.function.name);
}

/**
 * The grammar a chat request's output must follow, or null (free text). `vocab` is only called
 * for constrained requests: building a large vocabulary's trie takes seconds.
 * @throws ProxyError 400 when a schema uses a feature constrained decoding does not support.
 */
export function chatConstraint(vocab: () => TokenVocabulary, req: ChatRequest): RequestConstraint | null {
  const tools = forcedTools(req.tools, req.toolChoice);
  if (tools && tools.length > 0) {
    try {
      const grammar = toolCallGrammar(
        vocab(),
        tools.map((t) => ({ name: t.function.name, parameters: t.function.parameters })),
      );
      return { kind: "tool_call", grammar };
    } catch (err) {
      throw schemaError(err, "tools");
    }
  }
  return formatConstraint(vocab, req.responseFormat, "response_format");
}

/**
 * The grammar for a `response_format` (chat, and completions where the client sends one).
 * @throws ProxyError 400 for unsupported schema features.
 */
export function formatConstraint(
  vocab: () => TokenVocabulary,
  format: ResponseFormatParam | undefined,
  param: string,
): RequestConstraint | null {
  if (!format || format.type === "text") return null;
  try {
    if (format.type === "json_object") return { kind: "json_object", grammar: jsonGrammar(vocab(), format) };
    return {
      kind: "json_schema",
      grammar: jsonGrammar(vocab(), { type: "json_schema", schema: format.json_schema.schema ?? {} }),
    };
  } catch (err) {
    throw schemaError(err, `${param}.json_schema.schema`);
  }
}

function schemaError(err: unknown, param: string) {
  if (!(err instanceof SchemaError)) throw err;
  return invalidRequest(
    `${err.message.replace(/ \(at .*\)$/, "")} (schema path ${err.path})`,
    param,
    "unsupported_schema",
  );
}
