/**
 * The home page, rendered on the server with the variant the middleware decided: the HTML the
 * browser receives is already personalized, so nothing is swapped after the first paint.
 *
 * The decision comes in the request header the middleware set (lib/handoff.ts); the chosen
 * variant's fields come from the verified bundle (`fields=true`), the same one the middleware
 * decided from. An entry without a decision (Vary unreachable, middleware skipped) shows its
 * baseline's fields; with no bundle at all, a static fallback.
 */
import { headers } from "next/headers";
import type { Bundle, Json } from "@vary/sdk";
import { verifiedBundle } from "@/lib/bundle";
import { DECISION_HEADER, decodeDecision, type Decision, type EntryId, type EntryDecision } from "@/lib/handoff";

// Every request is decided for its visitor: never prerendered or cached.
export const dynamic = "force-dynamic";

type Fields = { [name: string]: Json };

interface Shown {
  fields: Fields | null;
  decision: EntryDecision | null;
}

function shown(bundle: Bundle | null, decision: Decision | null, entryId: EntryId): Shown {
  const decided = decision?.entries[entryId] ?? null;
  const all = bundle?.fields ?? null;
  const pick = (id: string): Fields | null => {
    const value = all?.[id];
    return value && typeof value === "object" && !Array.isArray(value) ? value : null;
  };
  // The variant's fields, else the baseline's (a bundle one version behind may lack a new variant).
  return { fields: (decided && pick(decided.variant_entry_id)) ?? pick(entryId), decision: decided };
}

function text(fields: Fields | null, name: string, fallback = ""): string {
  const value = fields?.[name];
  return typeof value === "string" ? value : fallback;
}

/** Where the decision is visible to tests and to a curious reader of the HTML. */
function marks(entryId: EntryId, { decision }: Shown) {
  return {
    "data-entry": entryId,
    "data-variant-entry": decision?.variant_entry_id ?? entryId,
    "data-experience": decision?.experience ?? "",
    "data-variant": String(decision?.variant ?? 0),
  };
}

export default async function Home() {
  const decision = decodeDecision((await headers()).get(DECISION_HEADER));
  const bundle = await verifiedBundle();
  const hero = shown(bundle, decision, "heroHome");
  const shipping = shown(bundle, decision, "bannerShipping");
  const newsletter = shown(bundle, decision, "bannerNewsletter");

  return (
    <main data-bundle-version={decision?.bundle_version ?? ""} data-visitor={decision?.visitor_id ?? ""}>
      <p {...marks("bannerShipping", shipping)} style={{ background: "#f3f0e8", padding: "8px 12px" }}>
        <a href={text(shipping.fields, "url", "#")}>{text(shipping.fields, "text", "Free returns within 30 days.")}</a>
      </p>
      <section {...marks("heroHome", hero)}>
        <h1>{text(hero.fields, "title", "Everything for your home")}</h1>
        <p>{text(hero.fields, "subtitle")}</p>
        <a href={text(hero.fields, "ctaUrl", "/shop")}>{text(hero.fields, "ctaLabel", "Shop now")}</a>
      </section>
      <aside {...marks("bannerNewsletter", newsletter)} style={{ borderTop: "1px solid #ddd", marginTop: 32 }}>
        <p>
          <a href={text(newsletter.fields, "url", "/newsletter")}>{text(newsletter.fields, "text", "Get our weekly picks.")}</a>
        </p>
      </aside>
    </main>
  );
}
