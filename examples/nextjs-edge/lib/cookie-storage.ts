/**
 * The SDK's first-party storage at the edge: the visitor's profile lives in a cookie.
 *
 * The SDK keeps a profile per device (sticky assignments, frequency counters, visits, page views)
 * in a Storage-like object. In a browser that is localStorage; an edge function has no storage
 * of its own, and the isolate's memory is shared by every visitor, so each request gets a storage
 * holding only this visitor's profile, read from and written back to the `vary_profile` cookie.
 * The page/event history is left out (it can outgrow a cookie): audiences on past pages need a
 * KV store instead. Everything else the SDK writes (session markers) lives for the request only.
 */
import type { StorageLike } from "@vary/sdk";

export const VISITOR_COOKIE = "vary_vid";
export const PROFILE_COOKIE = "vary_profile";
/** The SDK's key for a visitor's profile (src/index.js: PROFILE_PREFIX). */
const PROFILE_PREFIX = "vary_profile:";
/** Stay well under the 4 KB a browser keeps per cookie. */
const MAX_COOKIE_CHARS = 3_000;

/** An id the server accepts (types.Id: 1–256 characters) and a cookie can hold as is. */
export function validVisitorId(value: string | undefined): value is string {
  return typeof value === "string" && /^[A-Za-z0-9._:-]{8,128}$/.test(value);
}

export interface CookieStorage extends StorageLike {
  /** The profile cookie's new value when the SDK changed the profile, else null. */
  readonly updated: string | null;
}

export function cookieStorage(visitorId: string, cookie: string | undefined): CookieStorage {
  const items = new Map<string, string>();
  const profileKey = PROFILE_PREFIX + visitorId;
  const original = cookie && isJsonObject(cookie) ? cookie : null;
  if (original !== null) items.set(profileKey, original);
  let updated: string | null = null;
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem(key, value) {
      if (key !== profileKey) {
        items.set(key, value);
        return;
      }
      const { history: _history, ...kept } = JSON.parse(value) as Record<string, unknown>;
      const text = JSON.stringify(kept);
      items.set(key, text);
      if (text === original) updated = null;
      else if (encodeURIComponent(text).length <= MAX_COOKIE_CHARS) updated = text;
      else console.warn(`vary: profile of ${visitorId} too large for a cookie; not kept`);
    },
    removeItem: (key) => void items.delete(key),
    get updated() {
      return updated;
    },
  };
}

function isJsonObject(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}
