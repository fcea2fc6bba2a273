// The built-in corpus our tiny models' byte-level BPE is trained on: a few kilobytes of the text
// an agent model sees (chat turns, tool calls as JSON, code, numbers, some non-English), so the
// learned merges look like a real tokenizer's rather than arbitrary byte pairs.

/** Documents for BPE training; one string per document. */
export const TINY_CORPUS: string[] = [
  "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun, and the fox runs into the forest.",
  "Reinforcement learning trains an agent to act in an environment so that it collects as much reward as possible.",
  "A language model predicts the next token from the tokens before it. Training adjusts the weights to make the observed text more likely.",
  "You are a helpful assistant. Answer the question as accurately as you can, and say so when you do not know.",
  "What is the capital of France? The capital of France is Paris. What is the capital of Japan? It is Tokyo.",
  "Please write a short poem about the sea. The sea is wide and deep and blue; it sings at night and shines at noon.",
  "I'm going to the store. You're welcome to join. We've got time, and they'll be there at 5 o'clock.",
  "The weather today is sunny with a high of 21 degrees and a low of 12 degrees. Tomorrow it will rain.",
  "Step 1: read the task. Step 2: plan the solution. Step 3: call the tools you need. Step 4: check the result.",
  "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 2048 3.14159 2.71828 -7 1e-6 65536",
  "2 + 2 = 4. 12 * 12 = 144. The sum of 17 and 25 is 42. Half of 1000 is 500.",
  '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
  '{"name": "search", "arguments": {"query": "latest news about solar energy", "max_results": 5}}',
  '{"name": "calculator", "arguments": {"expression": "(3 + 4) * 5"}}',
  '{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}',
  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello! How are you?<|im_end|>\n<|im_start|>assistant\nI am fine, thank you. How can I help you today?<|im_end|>\n",
  '<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{"temperature": 21, "condition": "sunny"}\n</tool_response><|im_end|>\n<|im_start|>assistant\nIt is sunny in Paris, 21 degrees.<|im_end|>\n',
  'def add(a, b):\n    return a + b\n\n\ndef main():\n    for i in range(10):\n        print(add(i, i * 2))\n\n\nif __name__ == "__main__":\n    main()\n',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the document is JavaScript source text.
  "function fibonacci(n) {\n  if (n < 2) return n;\n  return fibonacci(n - 1) + fibonacci(n - 2);\n}\n\nconst result = fibonacci(10);\nconsole.log(`result: ${result}`);\n",
  "import numpy as np\n\nx = np.arange(16).reshape(4, 4)\nprint(x.sum(axis=0), x.mean())\n",
  "SELECT name, score FROM results WHERE score > 0.5 ORDER BY score DESC LIMIT 10;",
  "The model answered correctly, so the reward was 1.0. When the answer was wrong, the reward was 0.0.",
  "Agents call tools, read the tool responses, and then decide what to do next until the task is done.",
  "Le renard brun saute par-dessus le chien paresseux. Où est la bibliothèque ? À demain !",
  "Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München.",
  "El zorro marrón salta sobre el perro perezoso. ¿Cómo estás? ¡Muy bien, gracias!",
  "日本語のテキストも少し含めます。東京は日本の首都です。",
  "中文文本：今天天气很好。我们去公园散步吧。",
  "Emoji and symbols: 🙂 🚀 ✅ → ≤ ≥ ∑ π ° € £ ¥",
  "Hello world! Hello again, world. Goodbye, world. The end.",
];
