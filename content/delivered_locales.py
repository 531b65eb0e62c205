"""Locales hidden from the Content Delivery API are not served by Vary either.

A Contentful locale can be switched off for the delivery API ("Enable this locale in response" off:
``contentDeliveryApi: false`` in a space export, while ``contentManagementApi`` stays on): editors
write it, the CDA neither lists it in ``/locales`` nor answers ``locale=<it>``. The live source never
sees such a locale (Vary reads ``/locales`` from the CDA), but a ``contentful space export`` holds it
with its content. So, before compiling:

- a hidden locale is left out of the served locales: its values are never served, a requested tag
  is never matched to it (``de-CH`` goes to the next match by :mod:`content.locales`' rules);
- a served locale whose ``fallbackCode`` is hidden falls back to the hidden locale's own fallback (the
  first served locale down its chain), so content is not lost at a hidden step;
- each hidden locale is reported in ``GET /v1/content/issues`` (the issue's ``entry_id`` is the
  locale code, ``content_type`` ``"locale"``).

The default locale is always served: a space without it cannot be compiled, and the CDA's default
locale is what answers a request that names none.
"""

from __future__ import annotations

from content.items import ContentLocale
from content.snapshot import ContentIssue

__all__ = ["delivered_locales"]


def delivered_locales(
    locales: tuple[ContentLocale, ...], default: str
) -> tuple[tuple[ContentLocale, ...], tuple[ContentIssue, ...]]:
    """The locales Vary serves (fallbacks re-pointed past hidden ones) and an issue per hidden one."""
    hidden = {locale.code: locale for locale in locales if not locale.delivery and locale.code != default}
    if not hidden:
        return locales, ()
    served: list[ContentLocale] = []
    for locale in locales:
        if locale.code in hidden:
            continue
        fallback = locale.fallback_code
        seen: set[str] = set()
        while fallback in hidden and fallback not in seen:
            seen.add(fallback)
            fallback = hidden[fallback].fallback_code
        if fallback in hidden:  # a cycle of hidden locales: no fallback
            fallback = None
        served.append(locale if fallback == locale.fallback_code else _replace(locale, fallback))
    issues = tuple(
        ContentIssue(
            entry_id=code,
            content_type="locale",
            problem=(f'Locale "{code}" ({hidden[code].name}) is hidden from the Content Delivery API '
                     "(contentDeliveryApi: false), so Vary does not serve it either: its values are not "
                     "delivered and a request for it is answered in the best other locale."),
            fix=(f'To serve it, enable "{code}" in responses (Settings → Locales → "Enable this locale in '
                 "response\") and export again; otherwise nothing needs doing."),
        )
        for code in sorted(hidden)
    )
    return tuple(served), issues


def _replace(locale: ContentLocale, fallback: str | None) -> ContentLocale:
    return ContentLocale(code=locale.code, name=locale.name, default=locale.default, fallback_code=fallback)
