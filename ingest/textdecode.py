"""Turn the bytes of a text file into ``str`` without trusting its name.

Order of evidence, strongest first: a byte-order mark, the NUL pattern of BOM-less UTF-16,
a charset the container declared (HTML ``<meta charset>``, a MIME header), strict UTF-8,
then charset-normalizer restricted to the legacy encodings our users actually have. Limiting
the candidates matters: unrestricted detection on short Western text happily answers
"cp1250" or "mac_roman" and garbles the umlauts.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from charset_normalizer import from_bytes

#: legacy encodings charset-normalizer may choose between (order = preference on ties)
LEGACY_CANDIDATES = ("cp1252", "gb18030", "shift_jis")

# UTF-32 first: its little-endian BOM starts with the UTF-16 one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# WHATWG maps these labels to windows-1252; real "latin-1" pages use cp1252 punctuation.
_LABEL_ALIASES = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "ascii": "cp1252",
    "us-ascii": "cp1252",
    "iso8859-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-sjis": "shift_jis",
    "sjis": "shift_jis",
}


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str


def bom_encoding(data: bytes) -> str | None:
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    return None


def normalize_label(label: str) -> str | None:
    """A Python codec name for a declared charset label, or None if Python has no such codec."""
    cleaned = label.strip().strip("\"'").lower()
    cleaned = _LABEL_ALIASES.get(cleaned, cleaned)
    try:
        return codecs.lookup(cleaned).name
    except LookupError:
        return None


def utf16_without_bom(data: bytes) -> str | None:
    """Guess BOM-less UTF-16 from the NUL bytes ASCII-range characters leave in every other slot."""
    sample = data[:4096]
    if len(sample) < 4:
        return None
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    half = len(sample) // 2
    if odd_nuls > 0.3 * half and even_nuls < 0.05 * half:
        return "utf-16-le"
    if even_nuls > 0.3 * half and odd_nuls < 0.05 * half:
        return "utf-16-be"
    return None


def _strict(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_bytes(data: bytes, declared: str | None = None) -> DecodedText:
    """Decode ``data``; never raises for undecodable input (falls back to cp1252 with U+FFFD)."""
    bom = bom_encoding(data)
    if bom is not None:
        return DecodedText(data.decode(bom, errors="replace"), bom)
    # Before UTF-8: ASCII text in UTF-16 is full of NULs, which are valid UTF-8.
    utf16 = utf16_without_bom(data)
    if utf16 is not None:
        return DecodedText(data.decode(utf16, errors="replace"), utf16)
    if declared:
        codec = normalize_label(declared)
        # A declared UTF-16 without BOM or NUL pattern is a lie (often in HTML meta tags).
        if codec is not None and not codec.startswith("utf-16") and not codec.startswith("utf-32"):
            text = _strict(data, codec)
            if text is not None:
                return DecodedText(text, codec)
    text = _strict(data, "utf-8")
    if text is not None:
        return DecodedText(text, "utf-8")
    best = from_bytes(data, cp_isolation=list(LEGACY_CANDIDATES)).best()
    if best is not None:
        # Decode everything leniently: the detector only sampled chunks of the data.
        return DecodedText(data.decode(best.encoding, errors="replace"), best.encoding)
    return DecodedText(data.decode("cp1252", errors="replace"), "cp1252")
