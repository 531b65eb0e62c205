// TypeScript declarations for @vary/sdk (src/index.js). The JSON shapes mirror Vary's msgspec Structs
// (personalization/types.py, personalization/decision/bundle.py): field names are snake_case on purpose.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Condition = { [key: string]: Json };

export interface Consent {
  personalization?: boolean;
  analytics?: boolean;
}

/** What POST /v1/personalize takes as `visitor`. `id` defaults to the SDK's first-party id. */
export interface Visitor {
  id?: string;
  session_id?: string | null;
  channel?: "web" | "ios" | "android" | "email" | "kiosk" | "call_center" | "store";
  locale?: string | null;
  device?: string | null;
  country?: string | null;
  referrer?: string | null;
  page?: string | null;
  utm?: Record<string, string>;
  traits?: Record<string, Json>;
  consent?: Consent;
}

/** The visitor profile the server keeps in Redis; the SDK keeps one per device (first-party storage). */
export interface Profile {
  visits: number;
  page_views: number;
  conversions: number;
  first_seen: number | null;
  last_seen: number | null;
  channels: string[];
  goals: Record<string, number>;
  /** Sticky assignments: experience key (or `key@p<phase>`) → variant, −1 = held out. */
  assignments: Record<string, number>;
  /** Raw history fields: `p:<url>` / `e:<event>` → `"<count> <ts> <ts> …"`. */
  history: Record<string, string>;
  traits: Record<string, Json>;
  /** Frequency-cap counters: experience key → `"<day> <n day> <week> <n week> <n all>"`. */
  frequency: Record<string, string>;
  readonly is_new: boolean;
}

export interface Audience {
  id: string;
  key: string;
  name: string;
  condition: Condition;
}

export interface Experience {
  id: string;
  key: string;
  name: string;
  type: "personalization" | "ab_test" | "bandit" | string;
  variants: string[];
  weights: number[];
  audience: Audience | null;
  traffic_allocation: number;
  holdout: number;
  goals: string[];
  starts_at: number | null;
  ends_at: number | null;
  content_type: string | null;
  bandit_method: "thompson" | "epsilon_greedy";
  epsilon: number;
  min_probability: number;
  bucketing: "growthbook" | "ninetailed";
  layer: string | null;
  layer_range: [number, number] | null;
  frequency_cap: { max_exposures: number; period: "day" | "week" | "campaign" } | null;
  guardrails: { metric: string; harm: "decrease" | "increase" }[];
  updated_at: number | null;
  phase: number;
  paused: Record<string, string>;
}

export interface SegmentModel {
  version: string;
  segments: string[];
  intercepts: number[];
  weights: Record<string, number[]>;
}

export interface RewardModel {
  version: string;
  n_actions: number;
  actions: number[];
  intercepts: number[];
  weights: Record<string, number[]>;
}

/** GET /v1/bundle, format 1. */
export interface Bundle {
  format: 1;
  version: string;
  content_version: string;
  model_version: string | null;
  policy_versions: Record<string, string>;
  created_at: number;
  locale: string | null;
  global_holdout: number;
  experiences: Record<string, Experience>;
  entries: Record<string, string[]>;
  segment_model: SegmentModel | null;
  policies: Record<string, RewardModel>;
  server_only: string[];
  fields: Record<string, Json> | null;
}

/** One entry of the answer: POST /v1/personalize's PersonalizedEntry (its enumerable fields). */
export class DecidedEntry {
  entry_id: string;
  experience: string | null;
  variant: number;
  variant_entry_id: string;
  is_control: boolean;
  holdout: boolean;
  propensity: number;
  reason: string;
  exposure_id: string;
  content_type: string | null;
  fields: Json | null;
  /** The bundle says a plugin decides this entry: ask POST /v1/personalize for it. */
  server_only?: true;
  /** The item POST /v1/exposures takes for this entry. */
  exposure(): LocalExposure;
}

export class Answer {
  visitor_id: string;
  locale: string | null;
  segments: Record<string, number>;
  model_version: string | null;
  content_version: string;
  bundle_version: string;
  degraded: false;
  entries: DecidedEntry[];
  /** Not enumerable: the sticky assignments this decision made, `[visitor id, key, variant]`. */
  readonly assignments: [string, string, number][];
  /** Not enumerable: the global holdout's own exposure, or null without one. */
  readonly global: { variant: 0 | 1; holdout: boolean; propensity: number } | null;
}

/** One item of POST /v1/exposures {"decisions": [...]}: the decision and the inputs it was made from. */
export interface LocalExposure {
  bundle_version: string;
  ts: number;
  visitor: Visitor & { id: string; consent: Required<Consent> };
  profile: Omit<Profile, "is_new">;
  entry_id: string;
  experience: string | null;
  variant: number;
  propensity: number;
}

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export type Binary = Uint8Array | ArrayBuffer | ArrayBufferView;

export interface VaryOptions {
  /** Ed25519 public key (GET /v1/bundle/key): raw 32 bytes, SPKI DER/PEM, base64/base64url/hex text, or a CryptoKey. */
  publicKey?: Binary | string | CryptoKey | { public_key: string } | null;
  /** The server's VARY_BUNDLE_ENCRYPTION_KEY (base64), for encrypted bundles. */
  decryptionKey?: Binary | string | null;
  /** The bundle's signature: 64 bytes, or base64/base64url/hex text (`ed25519=` prefix accepted). */
  signature?: Binary | string | null;
  /** Vary's base URL, for exposures (and `Vary.load`). */
  endpoint?: string;
  /** A delivery key (vd_…). */
  key?: string;
  /** Where the visitor id and profiles live. Default: localStorage when usable, else memory. */
  storage?: StorageLike;
  /** The clock, in Unix seconds. */
  now?: () => number;
  /** "auto" (default): queue an exposure per decided entry; "manual": send them with `vary.expose(entry)`. */
  exposures?: "auto" | "manual";
  batchSize?: number;
  /** Delay before a partial batch is sent; negative: only on `flush()` or a full batch. */
  flushDelayMs?: number;
  fetch?: typeof fetch;
  onError?: (error: unknown) => void;
}

export interface DecideOptions {
  now?: number;
  /** Decide with this profile instead of the stored one (nothing is then stored). */
  profile?: Partial<Profile> | null;
  exposures?: "auto" | "manual";
}

export interface TrackOptions {
  visitorId?: string;
  sessionId?: string | null;
  channel?: string;
  url?: string | null;
  goal?: string | null;
  name?: string | null;
  now?: number;
}

export class VaryError extends Error {
  readonly code:
    | "bad_input" | "bad_key" | "encrypted" | "no_webcrypto" | "no_ed25519" | "bundle_format" | "bad_bundle" | "unverifiable"
    | "no_key" | "no_signature" | "bad_signature" | "bundle_unavailable" | "no_transport" | "exposures_refused"
    | string;
}

export class Vary {
  static fromBundle(input: Binary | string | Bundle, options?: VaryOptions): Promise<Vary>;
  static load(options: VaryOptions & { endpoint: string; key: string; locale?: string | null; fields?: boolean; signatureHeader?: string }): Promise<Vary>;
  readonly bundle: Bundle;
  readonly version: string;
  decide(visitor?: Visitor, entryIds?: string[], options?: DecideOptions): Answer;
  expose(entry: DecidedEntry): void;
  pending(): LocalExposure[];
  flush(options?: { beacon?: boolean }): Promise<unknown[]>;
  track(type: string, options?: TrackOptions): Profile;
  visitorId(): string;
  profile(visitorId?: string): Profile;
  forget(visitorId?: string): void;
}
export default Vary;

export const BUNDLE_FORMAT: 1;
export const SDK_VERSION: string;
export function verifyBundleSignature(bytes: Binary | string, signature: Binary | string, publicKey: VaryOptions["publicKey"]): Promise<boolean>;
export function memoryStorage(): StorageLike;
export function defaultStorage(): StorageLike;

// The pure pieces (ports of personalization/decision), for tests and advanced use.
export function fnv1a32(s: string): number;
export function bucketHash(seed: string, value: string, version: number): number | null;
export function bucketRanges(n: number, coverage?: number, weights?: number[] | null): [number, number][];
export function chooseVariation(n: number, ranges: [number, number][]): number;
export function inNamespace(userId: string, namespace: [string, number, number]): boolean;
export function equalWeights(n: number): number[];
export function murmur3_32(text: string, seed?: number): number;
export function evalCondition(attributes: Record<string, Json>, condition: Condition, savedGroups?: Record<string, Json[]> | null): boolean;
export function explainCondition(attributes: Record<string, Json>, condition: Condition): string;
export function regexSearch(pattern: string, insensitive: boolean, text: string): boolean;
export function regexError(pattern: string, insensitive?: boolean): string | null;
export function uniformFromKey(...parts: string[]): number;
export function actionProbabilities(
  predictions: number[],
  method?: "thompson" | "epsilon_greedy",
  options?: { epsilon?: number; minProbability?: number; rows?: number[] | null; evidenceRows?: number | number[] | null; loggedRows?: number | null; decay?: boolean },
): number[];
export function probabilityBest(predictions: number[], evidenceRows: number[]): number[];
export function chooseAction(probabilities: number[], u: number): number;
export function scoreSegments(model: SegmentModel, features: [string, number | string][]): [string, number][];
export function predictRewards(policy: RewardModel, features: [string, number | string][]): number[];
export function decideLocally(input: {
  visitor: Visitor & { id: string };
  profile?: Partial<Profile>;
  entries: { entry_id: string; experiences: Experience[] }[];
  model?: SegmentModel | null;
  now: number;
  policies?: Record<string, RewardModel>;
  globalHoldout?: number;
  newId: () => string;
}): {
  segments: [string, number][];
  model_version: string | null;
  decisions: Omit<DecidedEntry, "content_type" | "fields">[];
  exposures: Record<string, Json>[];
  assignments: [string, string, number][];
};

// Python formatting (reasons are the server's strings) and JavaScript value semantics.
export function pyFixed(x: number, digits: number): string;
export function pyPercent0(x: number): string;
export function pyG(x: number): string;
export function pyRepr(s: string): string;
export function formatValue(x: unknown, fromBundle?: boolean): string;
export function getPath(obj: unknown, path: string): unknown;
export function isOperatorObject(x: unknown): boolean;
export function jsType(x: unknown): string;
export function paddedVersion(v: unknown): string;
export const OPERATORS: Record<string, (actual: unknown, expected: unknown, groups: Record<string, Json[]>) => boolean>;
export class LazyDict {
  lookup(key: string): unknown;
}
export const MAX_INPUT_CHARS: number;
export const MAX_PATTERN_CHARS: number;

// Hashes, sums and the exploration maths.
export function sha256Words(bytes: Uint8Array): number[];
export function fsum(values: Iterable<number>): number;
export function erfc(x: number): number;
export const GH_TERMS: [number, number][];
export const THOMPSON_RACE: number;
export const BUDGET_ROWS: number;
export const DEFAULT_EVIDENCE_ROWS: number;
export function explorationBudget(epsilon: number, loggedRows: number | null): number;
export function explorationFloor(minProbability: number, budget: number, k: number): number;
export function sigmoid(z: number): number;
export function ninetailedRandom(text: string): number;
export function ninetailedSelectArm(random: number, shares: number[]): number;

// Features, context and selection.
export function buildFeatures(visitor: Visitor, profile: Profile, now: number): [string, number | string][];
export function policyContext(channel: string, country: string | null, device: string | null, segments: [string, number][]): [string, number | string][];
export const BUILTIN_ATTRIBUTES: Set<string>;
export function continentOf(country: string | null): string | null;
export function windowSeconds(key: string): number | null;
export function frequencyBuckets(now: number): [number, number];
export function exposureCounts(raw: string, now: number): { day: number; week: number; campaign: number };
export function countExposure(raw: string | undefined, now: number): string;
export function capReached(experience: Experience, attributes: Record<string, unknown>): string | null;
export function normaliseVisitor(visitor: Visitor): Required<Visitor>;
export function normaliseProfile(profile: Partial<Profile> | null): Profile;
export function audienceAttributes(visitor: Required<Visitor>, profile: Profile, segments: [string, number][], now: number): Record<string, unknown>;
export const HOLDOUT_SEED: string;
export const HOLDOUT_STICKY: -1;
export const GLOBAL_EXPERIENCE: string;
export const GLOBAL_HOLDOUT_SEED: string;
export function phaseKey(key: string, phase: number): string;
export function variantPropensity(experience: Experience, variant: number): number;
export function layerMiss(experience: Experience, visitorId: string): string | null;
export interface Assignment {
  experience: Experience | null;
  variant: number;
  holdout: boolean;
  propensity: number;
  reason: string;
}
export function assignVariant(experience: Experience, visitorId: string, sticky?: number | null): Assignment;
export function assignBandit(experience: Experience, visitorId: string, context: [string, number | string][], policy: RewardModel | null, sticky?: number | null): Assignment & { probabilities: number[] };
export function assignNinetailed(experience: Experience, stableId: string): Assignment | null;
export function selectExperience(
  experiences: Experience[], attributes: Record<string, unknown>, visitorId: string, sticky: Record<string, number>,
  now: number, context: [string, number | string][], policies: Record<string, RewardModel>,
): Assignment;
export function inGlobalHoldout(visitorId: string, share: number): boolean;
export function decodeBinary(value: Binary | string, what: string): Uint8Array;
