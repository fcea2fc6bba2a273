// The byte-level pushdown machine behind constrained decoding. A grammar is a sequence of literal
// bytes and JSON values (value nodes from schema.ts); the machine reads UTF-8 bytes and says
// whether they can still become a complete sentence. States are immutable stacks of frames, so
// the token mask can walk every token's bytes from one state without copying, and a state has a
// key (equal keys = equal futures) under which its mask is cached. Unions make the machine
// nondeterministic: a state is a set of stacks.
//
// Output is compact JSON: no whitespace except at most one space after `:` and `,`; object
// properties in schema order; numbers with at most 15 integer digits, 15 fraction digits and 2
// exponent digits (so a digit run cannot eat the whole budget).

import { minimalLengths, type ValueNode } from "./schema.ts";

/** One item of a grammar: bytes written as they are, or a JSON value. */
export type GrammarItem = { bytes: Uint8Array } | { value: ValueNode };

const MAX_INT_DIGITS = 15;
const MAX_FRAC_DIGITS = 15;
// Two exponent digits: 15 integer digits times 1e99 stays a finite double (1e999 parses as Infinity).
const MAX_EXP_DIGITS = 2;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const SPACE = 0x20;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isHex = (b: number) => isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
const SIMPLE_ESCAPES = new Set([QUOTE, BACKSLASH, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74]);

type Frame =
  | { t: "seq"; i: number; pos: number; inValue: boolean; key: string }
  | { t: "val"; node: ValueNode; key: string }
  // ph 0 before the opening quote, 1 in the body (n = UTF-8 continuation bytes due), 2 after a
  // backslash, 3 in \uXXXX (n = hex digits due).
  | { t: "str"; ph: number; n: number; key: string }
  // ph 0 start, 1 after '-', 2 after a leading 0, 3 integer digits, 4 after '.', 5 fraction
  // digits, 6 after 'e', 7 after the exponent sign, 8 exponent digits; n = digits in this part.
  | { t: "num"; node: ValueNode & { kind: "number" }; ph: number; n: number; key: string }
  | { t: "lit"; node: ValueNode & { kind: "literal" }; alive: number[]; pos: number; key: string }
  // ph 0 before '{', 1 after '{', 2 in a listed key (alive candidates, pos), 3 before ':',
  // 4 after ':', 5 after ': ', 6 in the value, 7 after a value, 8 after ',', 9 after ', ',
  // 10 in a free key (a string child). `last` = index of the last property written.
  | {
      t: "obj";
      node: ValueNode & { kind: "object" };
      ph: number;
      last: number;
      alive: number[];
      pos: number;
      key: string;
    }
  // ph 0 before '[', 1 after '[', 2 in an item, 3 after an item, 4 after ',', 5 after ', '.
  | { t: "arr"; node: ValueNode & { kind: "array" }; ph: number; count: number; key: string };

/** An immutable stack of frames, top first. Its key is built only when asked (most stacks the mask walk creates are never keyed). */
export class Stack {
  private cachedKey: string | null = null;
  constructor(
    readonly frame: Frame,
    readonly below: Stack | null,
  ) {}

  get key(): string {
    if (this.cachedKey === null) this.cachedKey = this.below ? `${this.frame.key}|${this.below.key}` : this.frame.key;
    return this.cachedKey;
  }
}

function push(frame: Frame, below: Stack | null): Stack {
  return new Stack(frame, below);
}

const seqFrame = (i: number, pos: number, inValue: boolean): Frame => ({
  t: "seq",
  i,
  pos,
  inValue,
  key: `q${i}.${pos}${inValue ? "v" : ""}`,
});
const strFrame = (ph: number, n: number): Frame => ({ t: "str", ph, n, key: `s${ph}.${n}` });
const numFrame = (node: ValueNode & { kind: "number" }, ph: number, n: number): Frame => ({
  t: "num",
  node,
  ph,
  n,
  key: `n${node.id}.${ph}.${n}`,
});
const litFrame = (node: ValueNode & { kind: "literal" }, alive: number[], pos: number): Frame => ({
  t: "lit",
  node,
  alive,
  pos,
  key: `l${node.id}.${pos}.${alive.join(",")}`,
});
const objFrame = (node: ValueNode & { kind: "object" }, ph: number, last: number, alive: number[] = [], pos = 0) =>
  ({
    t: "obj",
    node,
    ph,
    last,
    alive,
    pos,
    key: `o${node.id}.${ph}.${last}${ph === 2 ? `.${pos}.${alive.join(",")}` : ""}`,
  }) as Frame;
const arrFrame = (node: ValueNode & { kind: "array" }, ph: number, count: number): Frame => ({
  t: "arr",
  node,
  ph,
  count,
  key: `a${node.id}.${ph}.${count}`,
});
const valFrame = (node: ValueNode): Frame => ({ t: "val", node, key: `v${node.id}` });

/** What one frame does with a byte: replace itself (or pop: null), maybe push a child, maybe re-read the byte. */
interface Action {
  replace: Frame | null;
  push?: Frame;
  consumed: boolean;
}

/** Listed properties that may come after property `last`: optional ones up to the first required. */
function candidates(node: ValueNode & { kind: "object" }, last: number): number[] {
  const out: number[] = [];
  for (let j = last + 1; j < node.props.length; j++) {
    out.push(j);
    if (node.props[j].required) break;
  }
  return out;
}

function requiredAfter(node: ValueNode & { kind: "object" }, last: number): boolean {
  for (let j = last + 1; j < node.props.length; j++) if (node.props[j].required) return true;
  return false;
}

export class GrammarMachine {
  readonly items: GrammarItem[];
  private readonly minLen: Map<number, number>;
  private readonly startFrames = new Map<number, Frame[]>();

  constructor(items: GrammarItem[]) {
    this.items = items;
    this.minLen = new Map();
    for (const item of items) {
      if ("value" in item) for (const [k, v] of minimalLengths(item.value)) this.minLen.set(k, v);
    }
  }

  /** The state before any byte. */
  initial(): Stack[] {
    return [push(seqFrame(0, 0, false), null)];
  }

  /** The states after reading `byte` from any stack of `state` (empty: the byte is not allowed). */
  step(state: readonly Stack[], byte: number): Stack[] {
    const out: Stack[] = [];
    for (const s of state) this.stepStack(s, byte, out);
    if (out.length <= 1) return out;
    const seen = new Set<string>();
    return out.filter((s) => !seen.has(s.key) && seen.add(s.key) !== undefined);
  }

  /** Whether the bytes so far form a complete sentence (EOS may follow). */
  isComplete(state: readonly Stack[]): boolean {
    return state.some((s) => this.completeStack(s));
  }

  /** Fewest bytes that complete the sentence from `state` (0 when complete). */
  minRemaining(state: readonly Stack[]): number {
    let best = Number.POSITIVE_INFINITY;
    for (const s of state) best = Math.min(best, this.minStack(s));
    return best;
  }

  /** Cache key of a state: equal keys accept the same futures. */
  stateKey(state: readonly Stack[]): string {
    if (state.length === 1) return state[0].key;
    return state
      .map((s) => s.key)
      .sort()
      .join("#");
  }

  private stepStack(stack: Stack, byte: number, out: Stack[]): void {
    const f = stack.frame;
    if (f.t === "val") {
      for (const start of this.starts(f.node)) this.stepStack(push(start, stack.below), byte, out);
      return;
    }
    for (const a of this.feed(f, byte)) {
      // The frame stays as it is (string content): the same stack, nothing allocated.
      if (a.replace === f && a.consumed && !a.push) {
        out.push(stack);
        continue;
      }
      let next: Stack | null;
      if (a.replace === null) {
        next = stack.below ? this.childDone(stack.below) : null;
        if (!next) continue;
      } else next = push(a.replace, stack.below);
      if (a.push) next = push(a.push, next);
      if (a.consumed) out.push(next);
      else this.stepStack(next, byte, out);
    }
  }

  /** The parent after its child value finished. */
  private childDone(stack: Stack): Stack | null {
    const f = stack.frame;
    switch (f.t) {
      case "seq":
        return push(seqFrame(f.i + 1, 0, false), stack.below);
      case "obj":
        return push(objFrame(f.node, f.ph === 10 ? 3 : 7, f.last), stack.below);
      case "arr":
        return push(arrFrame(f.node, 3, f.count + 1), stack.below);
      default:
        return null;
    }
  }

  /** Concrete first frames of a value (unions and refs expanded). */
  private starts(node: ValueNode): Frame[] {
    const known = this.startFrames.get(node.id);
    if (known) return known;
    const out: Frame[] = [];
    const seen = new Set<number>();
    const add = (n: ValueNode) => {
      if (seen.has(n.id)) return;
      seen.add(n.id);
      switch (n.kind) {
        case "string":
          out.push(strFrame(0, 0));
          break;
        case "number":
          out.push(numFrame(n, 0, 0));
          break;
        case "literal":
          out.push(
            litFrame(
              n,
              n.values.map((_, i) => i),
              0,
            ),
          );
          break;
        case "object":
          out.push(objFrame(n, 0, -1));
          break;
        case "array":
          out.push(arrFrame(n, 0, 0));
          break;
        case "union":
          for (const o of n.options) add(o);
          break;
        default:
          if (n.target) add(n.target);
      }
    };
    add(node);
    this.startFrames.set(node.id, out);
    return out;
  }

  private feed(f: Frame, b: number): Action[] {
    switch (f.t) {
      case "seq":
        return this.feedSeq(f, b);
      case "str":
        return feedStr(f, b);
      case "num":
        return feedNum(f, b);
      case "lit":
        return feedLit(f, b);
      case "obj":
        return this.feedObj(f, b);
      case "arr":
        return feedArr(f, b);
      default:
        return [];
    }
  }

  private feedSeq(f: Frame & { t: "seq" }, b: number): Action[] {
    if (f.inValue || f.i >= this.items.length) return [];
    const item = this.items[f.i];
    if ("value" in item) return [{ replace: seqFrame(f.i, 0, true), push: valFrame(item.value), consumed: false }];
    if (item.bytes[f.pos] !== b) return [];
    const done = f.pos + 1 === item.bytes.length;
    return [{ replace: done ? seqFrame(f.i + 1, 0, false) : seqFrame(f.i, f.pos + 1, false), consumed: true }];
  }

  private feedObj(f: Frame & { t: "obj" }, b: number): Action[] {
    const node = f.node;
    const free = node.free !== null;
    const keyStart = (): Action[] => {
      if (free) return [{ replace: objFrame(node, 10, f.last), push: strFrame(1, 0), consumed: true }];
      const alive = candidates(node, f.last);
      return alive.length ? [{ replace: objFrame(node, 2, f.last, alive, 1), consumed: true }] : [];
    };
    switch (f.ph) {
      case 0:
        return b === LBRACE ? [{ replace: objFrame(node, 1, -1), consumed: true }] : [];
      case 1:
        if (b === RBRACE) return free || !requiredAfter(node, -1) ? [{ replace: null, consumed: true }] : [];
        return b === QUOTE ? keyStart() : [];
      case 2: {
        const alive = f.alive.filter((j) => node.props[j].key[f.pos] === b);
        if (alive.length === 0) return [];
        const done = alive.find((j) => node.props[j].key.length === f.pos + 1);
        if (done !== undefined) return [{ replace: objFrame(node, 3, done), consumed: true }];
        return [{ replace: objFrame(node, 2, f.last, alive, f.pos + 1), consumed: true }];
      }
      case 3:
        return b === COLON ? [{ replace: objFrame(node, 4, f.last), consumed: true }] : [];
      case 4:
      case 5: {
        if (f.ph === 4 && b === SPACE) return [{ replace: objFrame(node, 5, f.last), consumed: true }];
        const value = free ? (node.free as ValueNode) : node.props[f.last].node;
        return [{ replace: objFrame(node, 6, f.last), push: valFrame(value), consumed: false }];
      }
      case 7:
        if (b === RBRACE) return free || !requiredAfter(node, f.last) ? [{ replace: null, consumed: true }] : [];
        if (b === COMMA && (free || candidates(node, f.last).length > 0)) {
          return [{ replace: objFrame(node, 8, f.last), consumed: true }];
        }
        return [];
      case 8:
      case 9:
        if (f.ph === 8 && b === SPACE) return [{ replace: objFrame(node, 9, f.last), consumed: true }];
        return b === QUOTE ? keyStart() : [];
      default:
        return [];
    }
  }

  private completeStack(stack: Stack): boolean {
    const f = stack.frame;
    if (f.t === "seq") return stack.below === null && f.i >= this.items.length;
    if (!canEnd(f) || !stack.below) return false;
    const parent = this.childDone(stack.below);
    return parent !== null && this.completeStack(parent);
  }

  private minStack(stack: Stack): number {
    let total = this.minFinish(stack.frame);
    for (let s = stack.below; s; s = s.below) total += this.minAfterChild(s.frame);
    return total;
  }

  private len(node: ValueNode): number {
    return this.minLen.get(node.id) ?? 1;
  }

  /** Bytes to close an object after property `last` (remaining required properties and '}'). */
  private closeObject(node: ValueNode & { kind: "object" }, last: number): number {
    let total = 1;
    for (let j = last + 1; j < node.props.length; j++) {
      const p = node.props[j];
      if (p.required) total += 1 + p.key.length + 1 + this.len(p.node);
    }
    return total;
  }

  private minItemsLeft(node: ValueNode & { kind: "array" }, count: number): number {
    const left = Math.max(0, node.minItems - count);
    return left * (this.len(node.items) + 1);
  }

  /** Fewest bytes that finish a frame from its own state (it is the top of its stack). */
  private minFinish(f: Frame): number {
    switch (f.t) {
      case "seq":
        return this.minSeqFrom(f.i, f.pos);
      case "val":
        return this.len(f.node);
      case "str":
        if (f.ph === 1) return (f.n >= 10 ? UTF8_FIRST[f.n][2] + 1 : f.n) + 1;
        return f.ph === 0 ? 2 : f.ph === 2 ? 2 : f.n + 1;
      case "num":
        return [1, 1, 0, 0, 1, 0, 1, 1, 0][f.ph];
      case "lit":
        return Math.min(...f.alive.map((j) => f.node.values[j].length - f.pos));
      case "obj": {
        const node = f.node;
        const first = (last: number, comma: boolean) => {
          // A next listed property: key, ':', value, then the rest; or, for free objects, '"":' + value.
          if (node.free) return (comma ? 1 : 0) + 3 + this.len(node.free) + 1;
          let best = Number.POSITIVE_INFINITY;
          for (const j of candidates(node, last)) {
            best = Math.min(
              best,
              (comma ? 1 : 0) + node.props[j].key.length + 1 + this.len(node.props[j].node) + this.closeObject(node, j),
            );
          }
          return best;
        };
        const close = (last: number) => (node.free ? 1 : this.closeObject(node, last));
        switch (f.ph) {
          case 0:
            return this.len(node);
          case 1:
            return node.free || !requiredAfter(node, -1) ? 1 : first(-1, false);
          case 2:
            return Math.min(
              ...f.alive.map(
                (j) => node.props[j].key.length - f.pos + 1 + this.len(node.props[j].node) + this.closeObject(node, j),
              ),
            );
          case 3:
            return 1 + (node.free ? this.len(node.free) + 1 : this.len(node.props[f.last].node) + close(f.last));
          case 4:
          case 5:
          case 6:
            return node.free ? this.len(node.free) + 1 : this.len(node.props[f.last].node) + close(f.last);
          case 7:
            return close(f.last);
          case 10:
            return 1 + 1 + this.len(node.free as ValueNode) + 1;
          default:
            return first(f.last, false);
        }
      }
      case "arr": {
        const node = f.node;
        const m = this.len(node.items);
        switch (f.ph) {
          case 0:
            return this.len(node);
          case 1:
            return node.minItems === 0 ? 1 : this.minItemsLeft(node, 0) - 1 + 1;
          case 2:
            return m + this.minItemsLeft(node, f.count + 1) + 1;
          case 3:
            return this.minItemsLeft(node, f.count) + 1;
          default:
            return m + this.minItemsLeft(node, f.count + 1) + 1;
        }
      }
    }
  }

  /** Fewest bytes that finish a frame once the child value on top of it has finished. */
  private minAfterChild(f: Frame): number {
    switch (f.t) {
      case "seq":
        return this.minSeqFrom(f.i + 1, 0);
      case "obj":
        if (f.ph === 10) return 1 + this.len(f.node.free as ValueNode) + 1;
        return f.node.free ? 1 : this.closeObject(f.node, f.last);
      case "arr":
        return this.minItemsLeft(f.node, f.count + 1) + 1;
      default:
        return 0;
    }
  }

  private minSeqFrom(i: number, pos: number): number {
    let total = 0;
    for (let k = i; k < this.items.length; k++) {
      const item = this.items[k];
      total += "value" in item ? this.len(item.value) : item.bytes.length - (k === i ? pos : 0);
    }
    return total;
  }
}

function canEnd(f: Frame): boolean {
  if (f.t === "num") return f.ph === 2 || f.ph === 3 || f.ph === 5 || f.ph === 8;
  if (f.t === "lit") return f.alive.some((j) => f.node.values[j].length === f.pos);
  return false;
}

/** The action "stay in this string frame", one per frame object (the mask walk's hottest path). */
const STR_SAME = new WeakMap<Frame, Action[]>();
function remember(f: Frame): Action[] {
  const same: Action[] = [{ replace: f, consumed: true }];
  STR_SAME.set(f, same);
  return same;
}

/** Lead bytes whose next byte has a narrower range: the code of that range in UTF8_FIRST. */
const UTF8_LEAD: Record<number, number> = { 224: 10, 237: 11, 240: 12, 244: 13 };
/** [lowest, highest, continuation bytes left after it]. */
const UTF8_FIRST: Record<number, [number, number, number]> = {
  10: [0xa0, 0xbf, 1],
  11: [0x80, 0x9f, 1],
  12: [0x90, 0xbf, 2],
  13: [0x80, 0x8f, 2],
};

function feedStr(f: Frame & { t: "str" }, b: number): Action[] {
  const stay = (ph: number, n: number): Action[] => [{ replace: strFrame(ph, n), consumed: true }];
  switch (f.ph) {
    case 0:
      return b === QUOTE ? stay(1, 0) : [];
    case 1:
      if (f.n > 0) {
        // n ≥ 10: the first continuation byte after E0/ED/F0/F4, whose range is narrower (no
        // overlong forms, no surrogates, nothing past U+10FFFF); see UTF8_FIRST.
        const [lo, hi, left] = f.n >= 10 ? UTF8_FIRST[f.n] : [0x80, 0xbf, f.n - 1];
        return b >= lo && b <= hi ? stay(1, left) : [];
      }
      if (b === QUOTE) return [{ replace: null, consumed: true }];
      if (b === BACKSLASH) return stay(2, 0);
      if (b < 0x20) return [];
      if (b < 0x80) return STR_SAME.get(f) ?? remember(f);
      if (b >= 0xc2 && b <= 0xdf) return stay(1, 1);
      if (b === 0xe0 || b === 0xed || b === 0xf0 || b === 0xf4) return stay(1, UTF8_LEAD[b]);
      if (b >= 0xe1 && b <= 0xef) return stay(1, 2);
      if (b >= 0xf1 && b <= 0xf3) return stay(1, 3);
      return [];
    case 2:
      if (SIMPLE_ESCAPES.has(b)) return stay(1, 0);
      return b === 0x75 ? stay(3, 4) : [];
    default:
      if (!isHex(b)) return [];
      return f.n === 1 ? stay(1, 0) : stay(3, f.n - 1);
  }
}

function feedNum(f: Frame & { t: "num" }, b: number): Action[] {
  const to = (ph: number, n: number): Action[] => [{ replace: numFrame(f.node, ph, n), consumed: true }];
  const end: Action[] = canEnd(f) ? [{ replace: null, consumed: false }] : [];
  const { integer, exponent } = f.node;
  switch (f.ph) {
    case 0:
      if (b === MINUS) return f.node.negative ? to(1, 0) : [];
      return b === 0x30 ? to(2, 1) : isDigit(b) ? to(3, 1) : [];
    case 1:
      return b === 0x30 ? to(2, 1) : isDigit(b) ? to(3, 1) : [];
    case 2:
    case 3:
      if (f.ph === 3 && isDigit(b)) return f.n < MAX_INT_DIGITS ? to(3, f.n + 1) : [];
      if (!integer && b === DOT) return to(4, 0);
      if (exponent && (b === 0x65 || b === 0x45)) return to(6, 0);
      return end;
    case 4:
      return isDigit(b) ? to(5, 1) : [];
    case 5:
      if (isDigit(b)) return f.n < MAX_FRAC_DIGITS ? to(5, f.n + 1) : [];
      if (exponent && (b === 0x65 || b === 0x45)) return to(6, 0);
      return end;
    case 6:
      if (b === MINUS || b === PLUS) return to(7, 0);
      return isDigit(b) ? to(8, 1) : [];
    case 7:
      return isDigit(b) ? to(8, 1) : [];
    default:
      if (isDigit(b)) return f.n < MAX_EXP_DIGITS ? to(8, f.n + 1) : [];
      return end;
  }
}

function feedLit(f: Frame & { t: "lit" }, b: number): Action[] {
  const values = f.node.values;
  const out: Action[] = [];
  const alive = f.alive.filter((j) => values[j].length > f.pos && values[j][f.pos] === b);
  if (alive.length > 0) {
    // Every surviving value ends with this byte: pop at once (the common case: "x", true, null).
    const allEnd = alive.every((j) => values[j].length === f.pos + 1);
    out.push({ replace: allEnd ? null : litFrame(f.node, alive, f.pos + 1), consumed: true });
  }
  if (canEnd(f)) out.push({ replace: null, consumed: false });
  return out;
}

function feedArr(f: Frame & { t: "arr" }, b: number): Action[] {
  const node = f.node;
  const item = (): Action[] =>
    f.count < node.maxItems
      ? [{ replace: arrFrame(node, 2, f.count), push: valFrame(node.items), consumed: false }]
      : [];
  switch (f.ph) {
    case 0:
      return b === LBRACKET ? [{ replace: arrFrame(node, 1, 0), consumed: true }] : [];
    case 1:
      if (b === RBRACKET) return node.minItems === 0 ? [{ replace: null, consumed: true }] : [];
      return item();
    case 3:
      if (b === RBRACKET) return f.count >= node.minItems ? [{ replace: null, consumed: true }] : [];
      return b === COMMA && f.count < node.maxItems ? [{ replace: arrFrame(node, 4, f.count), consumed: true }] : [];
    case 4:
      if (b === SPACE) return [{ replace: arrFrame(node, 5, f.count), consumed: true }];
      return item();
    case 5:
      return item();
    default:
      return [];
  }
}
