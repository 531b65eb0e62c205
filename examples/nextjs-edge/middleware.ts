/**
 * Edge middleware: decide for the visitor before the page renders, so the first paint is already
 * personalized (no client-side swap, no flicker).
 *
 * Per request: the verified bundle from memory (lib/bundle.ts), the visitor id from the `vary_vid`
 * cookie (a new one when missing), the visitor's device profile from the `vary_profile` cookie
 * (lib/cookie-storage.ts), then `vary.decide()` — synchronous, a few microseconds per entry, no call
 * to Vary. The decision goes to the page in a request header (lib/handoff.ts); the exposures go to
 * `POST /v1/exposures` after the response (`event.waitUntil`, fetch with keepalive), where Vary
 * recomputes each one from the bundle it names before counting it. Without a verified bundle (Vary
 * not configured, unreachable since start, or a bad signature) the page serves its baseline.
 */
import { NextResponse, type NextFetchEvent, type NextRequest } from "next/server";
import { Vary, type Answer, type Visitor } from "@vary/sdk";
import { verifiedBundle, varyConfig } from "./lib/bundle";
import { PROFILE_COOKIE, VISITOR_COOKIE, cookieStorage, validVisitorId } from "./lib/cookie-storage";
import { ENTRY_IDS, withDecision } from "./lib/handoff";

export const config = {
  // The personalized pages. Middleware runs on the edge runtime (Next.js 15's default).
  matcher: ["/"],
};

const YEAR_S = 365 * 24 * 3600;

export async function middleware(request: NextRequest, event: NextFetchEvent): Promise<NextResponse> {
  const known = request.cookies.get(VISITOR_COOKIE)?.value;
  const id = validVisitorId(known) ? known : crypto.randomUUID();
  const settings = varyConfig();
  const bundle = await verifiedBundle(settings);

  let answer: Answer | null = null;
  let profile: string | null = null;
  if (settings !== null && bundle !== null) {
    const storage = cookieStorage(id, request.cookies.get(PROFILE_COOKIE)?.value);
    const vary = await Vary.fromBundle(bundle, {
      storage, endpoint: settings.endpoint, key: settings.key, flushDelayMs: -1, // sent below, once per request
      onError: (error) => console.error("vary: exposures not sent", error),
    });
    answer = vary.decide(visitorOf(request, id), [...ENTRY_IDS]);
    vary.track("page_view", { visitorId: id, url: request.nextUrl.href }); // visits and page views, for audiences
    profile = storage.updated;
    event.waitUntil(vary.flush().catch(() => undefined)); // POST /v1/exposures {"decisions": [...]}
  }

  const response = NextResponse.next({ request: { headers: withDecision(request.headers, answer) } });
  const cookie = { path: "/", sameSite: "lax" as const, secure: request.nextUrl.protocol === "https:", maxAge: YEAR_S };
  if (known !== id) response.cookies.set(VISITOR_COOKIE, id, cookie);
  if (profile !== null) response.cookies.set(PROFILE_COOKIE, profile, { ...cookie, httpOnly: true });
  return response;
}

/** The visitor as POST /v1/personalize takes it, from what the request says. */
function visitorOf(request: NextRequest, id: string): Visitor {
  const country = request.headers.get("x-vercel-ip-country") ?? request.headers.get("cf-ipcountry");
  const utm: Record<string, string> = {};
  for (const name of ["source", "medium", "campaign", "term", "content"]) {
    const value = request.nextUrl.searchParams.get(`utm_${name}`);
    if (value) utm[name] = value.slice(0, 256);
  }
  return {
    id,
    channel: "web",
    country: country && /^[A-Za-z]{2}$/.test(country) ? country : null,
    referrer: request.headers.get("referer")?.slice(0, 2048) ?? null,
    page: request.nextUrl.href.slice(0, 2048),
    utm,
  };
}
