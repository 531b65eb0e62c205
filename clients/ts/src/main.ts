/**
 * Personalize two entries, report one as seen, and send events — through the client that
 * @hey-api/openapi-ts generated from Vary's OpenAPI document (`src/client`, one function per
 * operation id: `personalize`, `recordExposures`, `recordEvents`).
 *
 *   VARY_URL=http://127.0.0.1:8000 VARY_KEY=<delivery key> node dist/main.js [visitor id]
 *
 * Prints one JSON object (what each call answered) so a test can check it.
 */
import { client } from "./client/client.gen.js";
import { personalize, recordEvents, recordExposures } from "./client/sdk.gen.js";
import type { ConversionEvent, EventBatch, PageViewEvent, PersonalizeRequest, PurchaseEvent } from "./client/types.gen.js";

const baseUrl = process.env.VARY_URL ?? "http://127.0.0.1:8000";
const key = process.env.VARY_KEY;
if (!key) throw new Error("set VARY_KEY to a delivery key");
const visitorId = process.argv[2] ?? "ts-visitor-1";

client.setConfig({ baseUrl, auth: () => key });

async function main(): Promise<void> {
  const request: PersonalizeRequest = {
    visitor: { id: visitorId, country: "CA", channel: "web" },
    entries: ["heroHome", "bannerShipping"],
    locale: "en-US",
    exposures: "on_view",
  };
  const answer = await personalize({ body: request, throwOnError: true });
  const entries = answer.data.entries;
  const tokens = entries.map((entry) => entry.exposure_token).filter((token): token is string => !!token);

  const seen = await recordExposures({ body: { tokens: [...tokens.slice(0, 1), "not-a-token"] }, throwOnError: true });

  const view: PageViewEvent = { type: "page_view", visitor_id: visitorId, page: "https://shop.example/" };
  const conversion: ConversionEvent = { type: "conversion", visitor_id: visitorId, goal: "signup", event_id: `${visitorId}-signup` };
  const purchase: PurchaseEvent = { type: "purchase", visitor_id: visitorId, order_id: `${visitorId}-o1`, value: 42.5, currency: "CAD" };
  // The last one breaks the schema on purpose: the 202 lists it in `rejected`, the others are recorded.
  const broken = { type: "conversion", visitor_id: visitorId } as unknown as ConversionEvent;
  const batch: EventBatch = { events: [view, conversion, purchase, broken] };
  const sent = await recordEvents({ body: batch, throwOnError: true });

  const refused = await recordEvents({ body: { events: [broken] } });

  process.stdout.write(
    JSON.stringify({
      personalize: {
        visitor_id: answer.data.visitor_id,
        entries: entries.map((entry) => ({ entry_id: entry.entry_id, variant: entry.variant, content_type: entry.content_type })),
        tokens: tokens.length,
      },
      exposures: seen.data,
      events: sent.data,
      refused: { status: refused.response?.status, error: refused.error },
    }),
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : JSON.stringify(error)}\n`);
  process.exit(1);
});
