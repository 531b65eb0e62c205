/**
 * What the middleware hands to the page: the decision, in a request header it sets itself.
 *
 * Only the decision travels (a few hundred bytes); the page looks the chosen variant's fields up
 * in its own verified bundle, so no header limit caps how much content a variant may carry.
 * The middleware deletes any copy of the header a client sent before setting its own.
 */

import type { Answer } from "@vary/sdk";

/** The entries this site personalizes (the demo space's). */
export const ENTRY_IDS = ["heroHome", "bannerShipping", "bannerNewsletter"] as const;
export type EntryId = (typeof ENTRY_IDS)[number];

/** The request header carrying the decision from the middleware to the page. */
export const DECISION_HEADER = "x-vary-decision";

export interface EntryDecision {
  experience: string | null;
  variant: number;
  variant_entry_id: string;
  holdout: boolean;
}

export interface Decision {
  bundle_version: string;
  visitor_id: string;
  entries: Record<string, EntryDecision>;
}

/** The request headers for the page: the client's, with this answer's decision in DECISION_HEADER. */
export function withDecision(incoming: Headers, answer: Answer | null): Headers {
  const headers = new Headers(incoming);
  headers.delete(DECISION_HEADER); // only the middleware decides: a client's copy is dropped
  if (answer !== null) headers.set(DECISION_HEADER, encodeDecision(decisionOf(answer)));
  return headers;
}

export function decisionOf(answer: Answer): Decision {
  const entries: Decision["entries"] = {};
  for (const entry of answer.entries) {
    const { experience, variant, variant_entry_id, holdout } = entry;
    entries[entry.entry_id] = { experience, variant, variant_entry_id, holdout };
  }
  return { bundle_version: answer.bundle_version, visitor_id: answer.visitor_id, entries };
}

/** Header-safe text (headers are Latin-1: ids and keys may not be). */
export function encodeDecision(decision: Decision): string {
  return encodeURIComponent(JSON.stringify(decision));
}

/** The decision of a header value, or null when it is missing or not one. */
export function decodeDecision(value: string | null): Decision | null {
  if (!value) return null;
  try {
    const decision: unknown = JSON.parse(decodeURIComponent(value));
    if (typeof decision !== "object" || decision === null) return null;
    const { bundle_version, visitor_id, entries } = decision as Partial<Decision>;
    if (typeof bundle_version !== "string" || typeof visitor_id !== "string") return null;
    if (typeof entries !== "object" || entries === null) return null;
    return decision as Decision;
  } catch {
    return null;
  }
}
