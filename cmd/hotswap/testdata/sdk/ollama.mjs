// Drives hotswap's Ollama API with the official ollama npm client, as its
// users call it. Prints one JSON line per check; cmd/hotswap/ollama_test.go
// reads them.
//
//   node ollama.mjs BASE_URL API_KEY CHAT_MODEL EMBED_MODEL
import { Ollama } from "ollama";

const [host, key, chatModel, embedModel] = process.argv.slice(2);
const ollama = new Ollama({ host, headers: { Authorization: `Bearer ${key}` } });

async function run(check, fn) {
  try {
    console.log(JSON.stringify({ check, ok: true, ...(await fn()) }));
  } catch (e) {
    console.log(JSON.stringify({ check, ok: false, status: e.status_code ?? 0, error: e.error ?? String(e) }));
  }
}

const messages = [{ role: "user", content: "hi" }];
await run("version", async () => ({ text: (await ollama.version()).version }));
await run("list", async () => ({ names: (await ollama.list()).models.map((m) => m.name) }));
await run("chat", async () => {
  const r = await ollama.chat({ model: chatModel, messages, stream: false, options: { temperature: 0.1, num_ctx: 4096 } });
  return { model: r.model, text: r.message.content, done: r.done, reason: r.done_reason, evalCount: r.eval_count };
});
await run("chat-stream", async () => {
  const parts = [];
  let last;
  for await (const part of await ollama.chat({ model: chatModel, messages, stream: true })) {
    parts.push(part.message.content);
    last = part;
  }
  return { model: last.model, text: parts.join(""), parts: parts.length, done: last.done, reason: last.done_reason,
    evalCount: last.eval_count, promptEvalCount: last.prompt_eval_count };
});
await run("generate", async () => {
  const r = await ollama.generate({ model: chatModel, prompt: "hi", stream: false });
  return { model: r.model, text: r.response, done: r.done };
});
await run("generate-stream", async () => {
  let text = "";
  let last;
  for await (const part of await ollama.generate({ model: chatModel, prompt: "hi", stream: true })) {
    text += part.response;
    last = part;
  }
  return { model: last.model, text, done: last.done };
});
await run("embed", async () => {
  const r = await ollama.embed({ model: embedModel, input: ["a", "b"] });
  return { model: r.model, count: r.embeddings.length, dim: r.embeddings[0].length };
});
await run("embeddings", async () => {
  const r = await ollama.embeddings({ model: embedModel, prompt: "a" });
  return { count: 1, dim: r.embedding.length };
});
await run("ps", async () => ({ names: (await ollama.ps()).models.map((m) => m.name) }));
await run("show", async () => {
  const r = await ollama.show({ model: chatModel });
  return { text: r.details?.family ?? "", names: r.capabilities ?? [] };
});
await run("unknown-model", async () => {
  await ollama.chat({ model: "no-such-model", messages, stream: false });
  return {};
});
await run("pull", async () => {
  await ollama.pull({ model: "llama3.2", stream: false });
  return {};
});
await run("unload", async () => {
  // Ollama's way to unload: an empty chat with keep_alive 0.
  await ollama.chat({ model: chatModel, messages: [], keep_alive: 0 });
  return { names: (await ollama.ps()).models.map((m) => m.name) };
});
