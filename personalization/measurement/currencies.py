"""The ISO 4217 currency codes a purchase may carry, so revenue is never summed across currencies.

Revenue is aggregated per currency (``<v>:cur:<CUR>:…`` in :mod:`personalization.measurement.attribution`),
and a purchase's ``currency`` comes from the visitor's browser with the public delivery key: any
three capital letters would let one client open up to 17,576 field groups per arm. Restricting it
to the codes ISO 4217 defines bounds that and catches typos (``EUE``) at the door.

Source: ISO 4217 "List One" (current currency and funds codes, including the ``X..`` codes for
precious metals, SDR and testing), as carried by Debian's ``iso-codes`` data (``iso_4217.json``)
in its 2026 release, the table pycountry 26.2.16 ships — 178 codes. It reflects the amendments up
to then: ``XCG`` replaced ``ANG`` (2025), ``ZWG`` replaced ``ZWL`` (2024), ``BGN`` left with
Bulgaria's adoption of the euro (2026). A later amendment is a one-line change here.

``XXX`` is ISO's "no currency involved": a purchase sent without a currency is counted under it
(:data:`NO_CURRENCY`), so existing clients keep working and their revenue stays apart from any
real currency's.
"""

from __future__ import annotations

__all__ = ["ISO_4217", "NO_CURRENCY"]

#: ISO 4217's code for transactions where no currency is involved.
NO_CURRENCY = "XXX"

#: The current ISO 4217 alphabetic codes (List One; source in the module docstring).
ISO_4217: frozenset[str] = frozenset({
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DJF",
    "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP",
    "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR",
    "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
    "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP",
    "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR",
    "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB",
    "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN",
    "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH",
    "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAD",
    "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD", "XPF",
    "XPT", "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWG",
})
