// Drives hotswap with the official Anthropic TypeScript SDK, a 0.x release
// (which sends the key as x-api-key) and a 1.x one, each as its users
// construct it. Prints one JSON line per check; cmd/hotswap/sdk_test.go
// reads them.
//
//   node sdk.mjs BASE_URL API_KEY MODEL
import Anthropic0 from "anthropic-0";
import Anthropic1 from "anthropic-1";

const [base, key, model] = process.argv.slice(2);
const sdks = { "0.39.0": Anthropic0, "1.17.0": Anthropic1 };

function report(sdk, check, fields) {
  console.log(JSON.stringify({ sdk, check, ...fields }));
}

for (const [version, Anthropic] of Object.entries(sdks)) {
  // The default: the key from apiKey, sent as x-api-key.
  const client = new Anthropic({ apiKey: key, baseURL: base, maxRetries: 0 });
  try {
    const msg = await client.messages.create({
      model, max_tokens: 16, messages: [{ role: "user", content: "hi" }],
    });
    report(version, "create", { ok: true, type: msg.type, text: msg.content[0]?.text ?? "" });
  } catch (e) {
    report(version, "create", { ok: false, status: e.status ?? 0, error: String(e) });
  }
  try {
    let text = "";
    const stream = client.messages.stream({
      model, max_tokens: 16, messages: [{ role: "user", content: "stream" }],
    });
    stream.on("text", (t) => { text += t; });
    await stream.finalMessage();
    report(version, "stream", { ok: true, text });
  } catch (e) {
    report(version, "stream", { ok: false, status: e.status ?? 0, error: String(e) });
  }
  // A key hotswap does not know: the SDK's AuthenticationError.
  const wrong = new Anthropic({ apiKey: "sk-not-hotswaps", baseURL: base, maxRetries: 0 });
  try {
    await wrong.messages.create({ model, max_tokens: 16, messages: [{ role: "user", content: "hi" }] });
    report(version, "wrong-key", { ok: true });
  } catch (e) {
    report(version, "wrong-key", { ok: false, status: e.status ?? 0, name: e.constructor.name });
  }
  // authToken: the key as Authorization: Bearer.
  const bearer = new Anthropic({ apiKey: null, authToken: key, baseURL: base, maxRetries: 0 });
  try {
    const msg = await bearer.messages.create({ model, max_tokens: 16, messages: [{ role: "user", content: "hi" }] });
    report(version, "auth-token", { ok: true, type: msg.type });
  } catch (e) {
    report(version, "auth-token", { ok: false, status: e.status ?? 0, error: String(e) });
  }
}
