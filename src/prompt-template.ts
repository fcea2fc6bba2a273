// Prompt templates as a store resource: the value `{ template: "..." }` that prompt optimisation
// (src/trainer/apo.ts) publishes and an agent reads from its rollout's resources, and the
// `{name}` placeholders both sides agree on. Shared by the runner's agents and the trainer, so it
// depends on nothing.

/** The resources value of a prompt template (other fields ride along untouched). */
export interface PromptResource {
  template: string;
  [key: string]: unknown;
}

/**
 * The prompt template a rollout runs with: `ctx.resources.template` (or `resources.template`
 * when given the resources value itself), else `fallback`. Throws when there is neither, so an
 * agent that needs a template never silently runs without one.
 */
export function promptTemplate(source: { resources: unknown } | unknown, fallback?: string): string {
  const resources =
    source !== null && typeof source === "object" && "resources" in source
      ? (source as { resources: unknown }).resources
      : source;
  if (resources !== null && typeof resources === "object") {
    const template = (resources as { template?: unknown }).template;
    if (typeof template === "string") return template;
  }
  if (fallback !== undefined) return fallback;
  throw new Error('this rollout has no prompt template (resources { "template": "..." }) and no fallback was given');
}

const FIELD = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** The `{name}` placeholders of a template, each once, in order of first use. */
export function templateFields(template: string): string[] {
  return [...new Set(Array.from(template.matchAll(FIELD), (m) => m[1]))];
}

/**
 * Fills `{name}` placeholders from `vars` (strings as they are, other values as JSON); a
 * placeholder without a value stays as written, so a half-filled template is visible.
 */
export function formatPrompt(template: string, vars: Record<string, unknown>): string {
  return template.replace(FIELD, (whole, name: string) => {
    if (!Object.hasOwn(vars, name) || vars[name] === undefined) return whole;
    const value = vars[name];
    return typeof value === "string" ? value : JSON.stringify(value);
  });
}
