// Reads {"documents": [rich-text document, ...], "items": [...], "includes": {"Entry": [...], "Asset": [...]}}
// on stdin and prints {"html": [...]}: each document rendered by @contentful/rich-text-html-renderer, with
// embedded entries and assets looked up by id in the answer's items and includes, as Contentful's
// delivery client resolves links (an entry that is itself an item is not repeated in includes).
import { documentToHtmlString } from "@contentful/rich-text-html-renderer";
import { BLOCKS, INLINES } from "@contentful/rich-text-types";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { documents, items, includes } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const byId = (kind) => new Map((includes[kind] || []).map((item) => [item.sys.id, item]));
const entries = byId("Entry");
for (const item of items) if (item.sys) entries.set(item.sys.id, item);
const assets = byId("Asset");
const entryOf = (node) => entries.get(node.data.target.sys.id);
const assetOf = (node) => assets.get(node.data.target.sys.id);
const label = (entry) => (entry ? `${entry.sys.contentType.sys.id}:${entry.sys.id}` : "missing");

const options = {
  renderNode: {
    [BLOCKS.EMBEDDED_ASSET]: (node) => {
      const asset = assetOf(node);
      return asset ? `<img src="https:${asset.fields.file.url}" alt="${asset.fields.title ?? ""}"/>` : "<!--missing asset-->";
    },
    [BLOCKS.EMBEDDED_ENTRY]: (node) => `<div data-entry="${label(entryOf(node))}"></div>`,
    [INLINES.EMBEDDED_ENTRY]: (node) => `<span data-entry="${label(entryOf(node))}"></span>`,
    [INLINES.ENTRY_HYPERLINK]: (node, next) => `<a data-entry="${label(entryOf(node))}">${next(node.content)}</a>`,
    [INLINES.ASSET_HYPERLINK]: (node, next) => {
      const asset = assetOf(node);
      return `<a href="${asset ? "https:" + asset.fields.file.url : "#missing"}">${next(node.content)}</a>`;
    },
  },
};
process.stdout.write(JSON.stringify({ html: documents.map((doc) => documentToHtmlString(doc, options)) }));
