// Runs /v1/sdk.js under Node and sends an event the server rejects, through `vary.survey.after` (the
// SDK's acknowledged event post); prints what the SDK warned, and the error body if the post failed. stdin: {"sdk": path, "baseUrl", "key",
// "older": null | an answer to serve instead of the server's (a server of the previous release)}.
import fs from "node:fs";
import vm from "node:vm";

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const warnings = [];
const realFetch = globalThis.fetch;
const context = {
  console: { warn: (message) => warnings.push(String(message)), log() {}, error() {} },
  fetch: async (url, init) => {
    if (input.older && String(url).includes("/v1/events")) {
      return { ok: true, status: 202, json: async () => structuredClone(input.older) };
    }
    return realFetch(url, init);
  },
  setTimeout, clearTimeout, URL, Blob, crypto: globalThis.crypto,
};
context.globalThis = context;
vm.createContext(context);
vm.runInContext(fs.readFileSync(input.sdk, "utf8"), context);
const vary = context.Vary.createVary({
  key: input.key, baseUrl: input.baseUrl, autoPageView: false, autoSurvey: false,
  consent: { analytics: true, personalization: true },
});
let error = null;
try {
  await vary.survey.after("conversion", { value: 3 }); // no `goal`: the server rejects it
} catch (failed) {
  error = { status: failed.status, body: failed.body };
}
process.stdout.write(JSON.stringify({ warnings, error }));
