// Drives a model with upstream_model, and its variants, with the official
// OpenAI and Anthropic TypeScript SDKs: what model each answer names, as
// the SDK hands it to its user. Prints one JSON line per check;
// cmd/hotswap/sdk_test.go reads them.
//
//   node shape.mjs BASE_URL NAME...
import OpenAI from "openai";
import Anthropic from "anthropic-1";

const [base, ...names] = process.argv.slice(2);
const openai = new OpenAI({ apiKey: "unused", baseURL: base + "/v1", maxRetries: 0 });
const anthropic = new Anthropic({ apiKey: "unused", baseURL: base, maxRetries: 0 });

function report(name, check, fields) {
  console.log(JSON.stringify({ name, check, ...fields }));
}

async function run(name, check, fn) {
  try {
    report(name, check, { ok: true, ...(await fn()) });
  } catch (e) {
    report(name, check, { ok: false, status: e.status ?? 0, error: String(e) });
  }
}

const messages = [{ role: "user", content: "hi" }];
for (const name of names) {
  await run(name, "openai-create", async () => {
    const r = await openai.chat.completions.create({ model: name, messages });
    return { models: [r.model], text: r.choices[0].message.content };
  });
  await run(name, "openai-stream", async () => {
    const stream = await openai.chat.completions.create({ model: name, messages, stream: true });
    const models = [];
    let text = "";
    for await (const chunk of stream) {
      models.push(chunk.model);
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    return { models, text };
  });
  await run(name, "openai-embeddings", async () => {
    const r = await openai.embeddings.create({ model: name, input: "x" });
    return { models: [r.model], text: String(r.data[0].embedding.length) };
  });
  await run(name, "anthropic-stream", async () => {
    const stream = anthropic.messages.stream({ model: name, max_tokens: 16, messages });
    let text = "";
    stream.on("text", (t) => { text += t; });
    const msg = await stream.finalMessage();
    return { models: [msg.model], text };
  });
}
