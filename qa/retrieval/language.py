"""Which language a question is in, and which languages an embedding model understands.

Hybrid retrieval only helps when both rankings carry signal. The packaged embedding model
(all-MiniLM-L6-v2) was trained on English: on XQuAD zh its dense ranking reaches nDCG@10
0.25 against BM25's 0.96, and fusing it in at any weight measured (0.1 to 1) pulls the
hybrid down (0.87 at 0.1, 0.59 at 1). So a question in a language the model does not
cover is ranked by BM25 alone, which also saves the embedding call.

Only the two languages docqa is built for are told apart, by script: enough Han characters
make a question Chinese, anything else counts as English.
"""

from __future__ import annotations

import re

#: share of Han characters among letters from which a question counts as Chinese; mixed
#: questions like "VPN 怎么设置" are Chinese with a few Latin product names
_HAN_SHARE = 0.3
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")

# Lower-cased model (folder) names whose training data was one language. Models not listed
# are trusted with every language: a wrong "multilingual" guess costs quality, a wrong
# "monolingual" guess would silently throw a good model's ranking away.
_MONOLINGUAL: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = (
    (
        re.compile(r"^(all-minilm|all-mpnet|all-distilroberta|multi-qa-|msmarco-)"),
        frozenset({"en"}),
    ),
    (re.compile(r"^bge-(small|base|large)-en"), frozenset({"en"})),
    (re.compile(r"^e5-(small|base|large)"), frozenset({"en"})),
    (
        re.compile(r"^(gte-(small|base|large)$|nomic-embed-text|snowflake-arctic-embed-)"),
        frozenset({"en"}),
    ),
    (re.compile(r"^bge-(small|base|large)-zh"), frozenset({"zh"})),
)


def question_language(text: str) -> str:
    """``"zh"`` when Han characters make up enough of the letters, else ``"en"``."""
    letters = sum(1 for ch in text if ch.isalpha())
    if not letters:
        return "en"
    han = len(_HAN.findall(text))
    return "zh" if han / letters >= _HAN_SHARE else "en"


def embedding_languages(model_id: str) -> frozenset[str] | None:
    """Languages a known monolingual embedding model covers; None = all (or unknown)."""
    name = model_id.lower()
    for pattern, languages in _MONOLINGUAL:
        if pattern.search(name):
            return languages
    return None


__all__ = ["embedding_languages", "question_language"]
