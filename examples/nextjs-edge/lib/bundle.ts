/**
 * The signed decision bundle, fetched from Vary, verified with the pinned public key and kept in
 * memory: both the middleware (edge runtime) and the page (Node.js runtime) read it from here.
 *
 * Why a module-level cache: an edge isolate or a Node process serves many requests, and a decision
 * must not wait on Vary. The bundle is revalidated at most every REVALIDATE_MS with `If-None-Match`
 * (a 304 costs no download and no verification); if Vary cannot be reached the last verified bundle
 * keeps serving, and with none at all the caller serves the baseline. Concurrent requests share
 * one refresh.
 */
import { Vary, type Bundle } from "@vary/sdk";

/** How long a verified bundle is used before asking Vary whether it changed. */
export const REVALIDATE_MS = 30_000;

export interface VaryConfig {
  /** Vary's base URL (VARY_URL), e.g. http://127.0.0.1:8000. */
  endpoint: string;
  /** A delivery key (VARY_KEY): reads the bundle and posts exposures, nothing else. */
  key: string;
  /** The Ed25519 public key of GET /v1/bundle/key (VARY_PUBLIC_KEY), pinned: a bundle that does not verify is refused. */
  publicKey: string;
  /** The locale whose fields the bundle carries (VARY_LOCALE); none: the space's default. */
  locale: string | null;
}

/** The configuration from the environment, or null (then every page serves its baseline). */
export function varyConfig(): VaryConfig | null {
  const endpoint = process.env.VARY_URL;
  const key = process.env.VARY_KEY;
  const publicKey = process.env.VARY_PUBLIC_KEY;
  if (!endpoint || !key || !publicKey) return null;
  return { endpoint: endpoint.replace(/\/+$/, ""), key, publicKey, locale: process.env.VARY_LOCALE || null };
}

interface Cached {
  bundle: Bundle;
  etag: string | null;
  checkedAt: number;
}

let cached: Cached | null = null;
let refreshing: Promise<Cached | null> | null = null;

/** The current verified bundle (with fields), or null when none could be fetched and verified yet. */
export async function verifiedBundle(config: VaryConfig | null = varyConfig()): Promise<Bundle | null> {
  if (config === null) return null;
  if (cached !== null && Date.now() - cached.checkedAt < REVALIDATE_MS) return cached.bundle;
  refreshing ??= refresh(config, cached).finally(() => {
    refreshing = null;
  });
  return (await refreshing)?.bundle ?? null;
}

async function refresh(config: VaryConfig, previous: Cached | null): Promise<Cached | null> {
  const query = new URLSearchParams({ fields: "true" });
  if (config.locale) query.set("locale", config.locale);
  const url = `${config.endpoint}/v1/bundle?${query}`;
  const headers: Record<string, string> = { Authorization: `Bearer ${config.key}` };
  if (previous?.etag) headers["If-None-Match"] = previous.etag;
  try {
    const response = await fetch(url, { headers, cache: "no-store" });
    if (response.status === 304 && previous !== null) {
      cached = { ...previous, checkedAt: Date.now() };
      return cached;
    }
    if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
    // The signature covers the body exactly as served (fetch has already undone gzip/brotli).
    const bytes = new Uint8Array(await response.arrayBuffer());
    const verified = await Vary.fromBundle(bytes, {
      publicKey: config.publicKey,
      signature: response.headers.get("X-Vary-Signature"),
    });
    cached = { bundle: verified.bundle, etag: response.headers.get("ETag"), checkedAt: Date.now() };
    return cached;
  } catch (error) {
    console.error("vary: could not refresh the bundle; keeping the last verified one", error);
    if (previous !== null) cached = { ...previous, checkedAt: Date.now() }; // retry in REVALIDATE_MS, not on every request
    return previous;
  }
}
