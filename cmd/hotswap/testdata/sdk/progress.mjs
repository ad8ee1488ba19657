// Streams a chat completion with the official OpenAI TypeScript SDK from
// a model that has to load, with load_progress on: what the SDK hands its
// user, as a chat window would show it (delta.reasoning_content, an
// OpenAI-compatible extension the SDK passes through, and delta.content).
// Prints one JSON line per stream; cmd/hotswap/progress_test.go reads it.
//
//   node progress.mjs BASE_URL MODEL...
import OpenAI from "openai";

const [base, ...models] = process.argv.slice(2);
const openai = new OpenAI({ apiKey: "unused", baseURL: base + "/v1", maxRetries: 0 });

for (const model of models) {
  const out = { model, ok: true, reasoning: "", content: "", models: [], roles: [], chunks: 0 };
  try {
    const stream = await openai.chat.completions.create({
      model,
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    for await (const chunk of stream) {
      out.chunks++;
      out.models.push(chunk.model);
      const delta = chunk.choices[0]?.delta ?? {};
      if (delta.role) out.roles.push(delta.role);
      out.reasoning += delta.reasoning_content ?? "";
      out.content += delta.content ?? "";
    }
  } catch (e) {
    out.ok = false;
    out.error = String(e);
  }
  console.log(JSON.stringify(out));
}
