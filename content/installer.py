"""Install Vary's content model in a Contentful space, with the official ``contentful_management`` client.

What it does (DESIGN §3), in this order, so the space is never left with a dangling link:

1. List the environment's content types once (one paged ``GET …/content_types``) and check every
   ``add_to`` name against it *before* writing anything.
2. ``varyAudience``, ``varyExperience``, ``varyJourney``, ``varySettings`` (the space's goals and
   global holdout) then ``varySurvey`` (NPS/CSAT/CES/SUS/feedback prompts, :mod:`content.surveys`;
   ``content/model/*.json``): missing → create
   (``PUT …/content_types/<id>``) and publish; different from the model → update (``PUT`` with
   ``X-Contentful-Version``) and publish; equal but with unpublished changes → publish; equal and
   published → nothing.
3. Each ``add_to`` content type without a ``varyExperiences`` field gets Vary's field appended
   (``content/model/varyExperiencesField.json``), saved, and published.

Idempotent: a second run makes no write request at all. ``dry_run=True`` reports what a run would do
and makes no write request either.

How "equal" is decided (:func:`normalize_field`): ``sys`` and ``metadata`` are ignored; Contentful's
defaults (``localized``/``required``/``disabled``/``omitted``/``deleted`` false, empty
``validations``) equal their absence, ``null`` equals absent, and validations compare as a set (their
order changes nothing in Contentful). **Field order counts**: Contentful shows fields in that order in
the entry editor, so a reordered Vary type is put back in the model's order. Fields someone added to
a Vary type are kept, after the model's fields, and field properties this module does not know (say a
newer API's) are neither compared nor dropped.

Publishing someone else's drafts is avoided: an ``add_to`` content type that has unpublished changes
gets the field saved but not published, and the report says so.

Error tree::

    InstallError                   the model could not be installed; the message says what to do
     ├── UnknownContentTypeError   an add_to name is not a content type here (lists those that are)
     └── ManagementAPIError        Contentful refused or could not be reached (``status`` when it answered)

The client is blocking (``requests``, no timeout of its own): call this from a CLI or a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = [
    "EXPERIENCES_FIELD_ID",
    "VARY_CONTENT_TYPES",
    "ContentTypeResult",
    "InstallError",
    "InstallReport",
    "ManagementAPIError",
    "UnknownContentTypeError",
    "experiences_field",
    "install_content_model",
    "model_content_types",
    "normalize_content_type",
    "normalize_field",
]

MODEL_DIR = Path(__file__).parent / "model"
VARY_CONTENT_TYPES: tuple[str, ...] = (
    "varyAudience", "varyExperience", "varyJourney", "varySettings", "varySurvey",  # a survey links an experience
)
EXPERIENCES_FIELD_ID = "varyExperiences"
MAX_FIELDS = 50  # Contentful's limit per content type
_PAGE = 1000  # the CMA's largest page
_FIELD_DEFAULTS: dict[str, Any] = {
    "localized": False, "required": False, "disabled": False, "omitted": False, "deleted": False,
    "validations": [],
}
#: Field properties compared and owned by the model; any other property is left as the server has it.
_KNOWN_FIELD_KEYS = frozenset({"id", "name", "type", "linkType", "items", "defaultValue", *_FIELD_DEFAULTS})

Action = Literal["created", "updated", "published", "field_added", "field_saved", "unchanged"]


class InstallError(Exception):
    """The content model could not be installed. The message says what to do about it."""


class UnknownContentTypeError(InstallError):
    """An ``add_to`` name is not a content type of the environment. ``available`` lists those that are."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        listed = ", ".join(available) if available else "none"
        super().__init__(f"content type {name!r} does not exist in this environment; it has: {listed}")
        self.name = name
        self.available = tuple(available)


class ManagementAPIError(InstallError):
    """Contentful's Management API refused a request, or could not be reached (``status`` is None)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ContentTypeResult(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to one content type. ``changes`` lists the differences that caused an update."""

    content_type: str
    action: Action
    changes: tuple[str, ...] = ()
    note: str | None = None


_DONE: dict[str, tuple[str, str]] = {  # action → (done, would do)
    "created": ("created and published", "would create and publish"),
    "updated": ("updated and published", "would update and publish"),
    "published": ("published", "would publish"),
    "field_added": ("varyExperiences field added and published",
                    "would add the varyExperiences field and publish"),
    "field_saved": ("varyExperiences field added, NOT published",
                    "would add the varyExperiences field, not publish"),
    "unchanged": ("unchanged", "unchanged"),
}


class InstallReport(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome per content type, in the order they were handled."""

    space_id: str
    environment: str
    results: tuple[ContentTypeResult, ...]
    dry_run: bool = False

    def _ids(self, *actions: str) -> tuple[str, ...]:
        return tuple(r.content_type for r in self.results if r.action in actions)

    @property
    def created(self) -> tuple[str, ...]:
        return self._ids("created")

    @property
    def updated(self) -> tuple[str, ...]:
        """Content types written to other than by creation (updated, published, field added)."""
        return self._ids("updated", "published", "field_added", "field_saved")

    @property
    def unchanged(self) -> tuple[str, ...]:
        return self._ids("unchanged")

    @property
    def changed(self) -> bool:
        return any(r.action != "unchanged" for r in self.results)

    def render(self) -> str:
        """A readable report for the CLI."""
        head = "Dry run: nothing was written. " if self.dry_run else ""
        lines = [f"{head}Vary content model in space {self.space_id}, environment {self.environment}:"]
        width = max((len(r.content_type) for r in self.results), default=0)
        for r in self.results:
            done, would = _DONE[r.action]
            lines.append(f"  {r.content_type:<{width}}  {would if self.dry_run else done}")
            lines.extend(f"  {'':<{width}}    - {change}" for change in r.changes)
            if r.note:
                lines.append(f"  {'':<{width}}    note: {r.note}")
        return "\n".join(lines)


# --- the model --------------------------------------------------------------------------------------


@cache
def _model_text(name: str) -> str:
    return (MODEL_DIR / f"{name}.json").read_text(encoding="utf-8")


def model_content_types() -> dict[str, dict[str, Any]]:
    """Vary's content types as management-API definitions (``sys`` removed), by id. Fresh copies."""
    result = {}
    for content_type_id in VARY_CONTENT_TYPES:
        definition = json.loads(_model_text(content_type_id))
        definition.pop("sys", None)
        result[content_type_id] = definition
    return result


def experiences_field() -> dict[str, Any]:
    """The ``varyExperiences`` field a personalized content type gets. A fresh copy."""
    return json.loads(_model_text("varyExperiencesField"))


# --- comparison -------------------------------------------------------------------------------------


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _validation_set(validations: Iterable[Any]) -> list[Any]:
    return sorted((_drop_nulls(v) for v in validations), key=lambda v: json.dumps(v, sort_keys=True))


def normalize_field(field: Mapping[str, Any]) -> dict[str, Any]:
    """A field as Contentful means it: defaults and nulls dropped, validations order-free."""
    result = _drop_nulls(dict(field))
    for key, default in _FIELD_DEFAULTS.items():
        if key in result and result[key] == default:
            del result[key]
    if "validations" in result:
        result["validations"] = _validation_set(result["validations"])
    items = result.get("items")
    if isinstance(items, dict):
        items = dict(items)
        if items.get("validations"):
            items["validations"] = _validation_set(items["validations"])
        else:
            items.pop("validations", None)
        result["items"] = items
    return result


def normalize_content_type(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a content type the model owns, normalized: name, description, displayField, fields."""
    result = {
        "name": definition.get("name"),
        "description": definition.get("description") or None,
        "displayField": definition.get("displayField") or None,
        "fields": [normalize_field(f) for f in definition.get("fields") or []],
    }
    return {k: v for k, v in result.items() if v is not None}


def _desired_fields(
    current: Sequence[Mapping[str, Any]], model: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The model's fields, in its order, keeping unknown properties; then fields only the space has."""
    by_id = {f.get("id"): f for f in current}
    model_ids = {f["id"] for f in model}
    fields = []
    for model_field in model:
        kept = {k: v for k, v in by_id.get(model_field["id"], {}).items() if k not in _KNOWN_FIELD_KEYS}
        fields.append({**kept, **model_field})
    fields.extend(dict(f) for f in current if f.get("id") not in model_ids)
    return fields


def _differences(current: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """Readable differences between two content type definitions (empty when equal)."""
    have, want = normalize_content_type(current), normalize_content_type(desired)
    changes = [
        f"{key}: {have.get(key)!r} -> {want.get(key)!r}"
        for key in ("name", "displayField", "description")
        if have.get(key) != want.get(key)
    ]
    have_fields = {f.get("id"): f for f in have.get("fields", [])}
    for field in want.get("fields", []):
        old = have_fields.get(field["id"])
        if old is None:
            changes.append(f"field {field['id']}: missing")
            continue
        keys = sorted(k for k in {*old, *field} if old.get(k) != field.get(k))
        if keys:
            changes.append(f"field {field['id']}: {', '.join(keys)} differ")
    order_have = [f.get("id") for f in have.get("fields", [])]
    order_want = [f.get("id") for f in want.get("fields", [])]
    if not changes and order_have != order_want:
        changes.append("field order differs")
    return changes


def _has_unpublished_changes(raw: Mapping[str, Any]) -> bool:
    """True when the draft is ahead of the published version, or it was never published."""
    sys = raw.get("sys", {})
    published = sys.get("publishedVersion")
    return published is None or sys.get("version") != published + 1


# --- talking to Contentful --------------------------------------------------------------------------


def _client(token_or_factory: str | Callable[[], Any], api_url: str, https: bool) -> Any:
    if callable(token_or_factory):
        return token_or_factory()
    if not token_or_factory:
        raise InstallError("a management token is required (a Contentful CMA personal access token)")
    try:
        import contentful_management
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InstallError("the 'contentful-management' package is not installed") from exc
    return contentful_management.Client(token_or_factory, api_url=api_url, https=https, application_name="vary")


_HINTS = {
    401: "the management token was refused; use a Content Management API token",
    403: "the token may not change content types in this space or environment",
    404: "the space or environment does not exist, or the token cannot see it",
    409: "someone changed it meanwhile; run the install again",
    422: "Contentful rejected the definition",
    429: "Contentful's rate limit was hit; wait a minute and run again",
}


class _Api:
    """The few management calls the installer makes, with Contentful's errors turned into ours."""

    def __init__(self, client: Any, space_id: str, environment: str, where: str) -> None:
        self.proxy = client.content_types(space_id, environment)
        self.where = where

    def call(self, doing: str, fn: Callable[[], Any]) -> Any:
        import requests

        try:
            return fn()
        except requests.RequestException as exc:
            raise ManagementAPIError(f"{doing}: cannot reach Contentful at {self.where}: {exc}") from exc
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if not isinstance(status, int) or getattr(exc, "response", None) is None:
                raise
            said = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            hint = _HINTS.get(status, "Contentful answered with an error")
            raise ManagementAPIError(f"{doing}: {hint} (HTTP {status}). {said}", status=status) from exc

    def list_all(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        skip = 0
        while True:
            page = self.call(
                f"listing content types in {self.where}",
                lambda: self.proxy.all({"limit": _PAGE, "skip": skip}),
            )
            items = list(page)
            found.update((ct.raw["sys"]["id"], ct) for ct in items)
            skip += len(items)
            if not items or skip >= getattr(page, "total", 0):
                return found


def _install_vary_type(
    api: _Api, content_type_id: str, model: dict[str, Any], current: Any, dry_run: bool
) -> ContentTypeResult:
    if current is None:
        if not dry_run:
            created = api.call(f"creating {content_type_id}", lambda: api.proxy.create(content_type_id, model))
            api.call(f"publishing {content_type_id}", created.publish)
        return ContentTypeResult(content_type=content_type_id, action="created")
    desired = {**model, "fields": _desired_fields(current.raw.get("fields") or [], model["fields"])}
    changes = _differences(current.raw, desired)
    if changes:
        if not dry_run:
            api.call(f"updating {content_type_id}", lambda: current.update(desired))
            api.call(f"publishing {content_type_id}", current.publish)
        return ContentTypeResult(content_type=content_type_id, action="updated", changes=tuple(changes))
    if _has_unpublished_changes(current.raw):
        if not dry_run:
            api.call(f"publishing {content_type_id}", current.publish)
        return ContentTypeResult(
            content_type=content_type_id, action="published", changes=("had unpublished changes",)
        )
    return ContentTypeResult(content_type=content_type_id, action="unchanged")


def _add_experiences_field(api: _Api, content_type_id: str, current: Any, dry_run: bool) -> ContentTypeResult:
    field = experiences_field()
    fields = list(current.raw.get("fields") or [])
    existing = next((f for f in fields if f.get("id") == EXPERIENCES_FIELD_ID), None)
    if existing is not None:
        note = None
        if normalize_field(existing) != normalize_field(field):
            note = "its varyExperiences field differs from Vary's definition; left as it is"
        return ContentTypeResult(content_type=content_type_id, action="unchanged", note=note)
    if len(fields) >= MAX_FIELDS:
        raise InstallError(
            f"{content_type_id} already has {len(fields)} fields, Contentful's maximum: "
            f"remove one before adding {EXPERIENCES_FIELD_ID}"
        )
    publish = not _has_unpublished_changes(current.raw)
    if not dry_run:
        # The raw field list, not the SDK's field objects: those drop properties they do not know.
        api.call(f"adding {EXPERIENCES_FIELD_ID} to {content_type_id}",
                 lambda: current.update({"fields": [*fields, field]}))
        if publish:
            api.call(f"publishing {content_type_id}", current.publish)
    if publish:
        return ContentTypeResult(content_type=content_type_id, action="field_added")
    return ContentTypeResult(
        content_type=content_type_id,
        action="field_saved",
        note="it has unpublished changes of someone else's: review and publish it in Contentful",
    )


def install_content_model(
    token_or_factory: str | Callable[[], Any],
    space_id: str,
    environment: str = "master",
    *,
    add_to: Sequence[str] = (),
    api_url: str = "api.contentful.com",
    https: bool = True,
    dry_run: bool = False,
) -> InstallReport:
    """Install (or bring up to date) Vary's content types, and add ``varyExperiences`` to ``add_to``.

    ``token_or_factory`` is a Content Management API token, or a callable returning a
    ``contentful_management.Client`` (then ``api_url``/``https`` are unused). Raises
    :class:`InstallError` subclasses; nothing is written when an ``add_to`` name is unknown.
    """
    targets = list(dict.fromkeys(name.strip() for name in add_to if name.strip()))
    own = [name for name in targets if name in VARY_CONTENT_TYPES]
    if own:
        raise InstallError(f"{own[0]} is Vary's own content type: it cannot get a {EXPERIENCES_FIELD_ID} field")
    where = f"space {space_id}, environment {environment} ({'https' if https else 'http'}://{api_url})"
    api = _Api(_client(token_or_factory, api_url, https), space_id, environment, where)
    existing = api.list_all()
    for name in targets:
        if name not in existing:
            raise UnknownContentTypeError(name, sorted(existing))
    results = [
        _install_vary_type(api, ct_id, definition, existing.get(ct_id), dry_run)
        for ct_id, definition in model_content_types().items()
    ]
    results += [_add_experiences_field(api, name, existing[name], dry_run) for name in targets]
    return InstallReport(space_id=space_id, environment=environment, results=tuple(results), dry_run=dry_run)
