"""Statements written by the model: map a prompt over each window, reduce the results.

    map     per window, at most ``statements_per_window`` statements, each ending with the
            pages it comes from
    reduce  consecutive statements whose combining prompt fits the context are combined
            into fewer, in rounds while they do not fit one prompt; in a collection
            synthesis they carry document numbers (``[D2, p. 3]``)

Every generation is a batch one (``qa.llm.resumable``): it gives the model to any waiting
question and goes on afterwards. Whenever the model's output is unusable (nothing parses,
no room left to answer, rounds that do not converge) the statements are chosen by
centroid instead (``qa.summaries.synthesis.Extractive``), so no part goes unsummarized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qa.errors import InvalidInput
from qa.llm.generate import ChatMessage, Generator
from qa.llm.resumable import ResumableGenerator
from qa.summaries.control import Run
from qa.summaries.options import SummaryOptions
from qa.summaries.synthesis import Extractive, attribute, window_pages
from qa.summaries.text import GENERATIVE_LABEL, Statement, format_pages, parse_statements
from qa.summaries.windowing import DocumentText, Window, token_budget, token_windows

MAP_SYSTEM = "You summarize documents for busy readers. You state only what the text says."
_MAX_REDUCE_ROUNDS = 4
#: a combining prompt that leaves the model less room than this is not worth running
_MIN_ANSWER_TOKENS = 16

#: document id -> (its number Dn in a synthesis prompt, its name)
Legend = dict[str, tuple[int, str]]


def map_messages(doc_name: str, text: str, n: int) -> list[ChatMessage]:
    instruction = (
        f'Summarize this excerpt of the document "{doc_name}" in at most {n} short '
        'statements. Write each statement on its own line starting with "- ", and end '
        "it with the page it comes from, like (p. 3) or (pp. 3-4). Pages are marked "
        "in the excerpt as [Page N]."
    )
    return [
        {"role": "system", "content": MAP_SYSTEM},
        {"role": "user", "content": f"{instruction}\n\nExcerpt:\n{text}"},
    ]


def reduce_messages(
    name: str, statements: Sequence[Statement], target: int, legend: Legend
) -> list[ChatMessage]:
    if len(legend) > 1:
        instruction, lines = _across_documents(name, statements, target, legend)
    else:
        instruction, lines = _within_document(name, statements, target)
    return [
        {"role": "system", "content": MAP_SYSTEM},
        {"role": "user", "content": instruction + "\n\nStatements:\n" + "\n".join(lines)},
    ]


def _across_documents(
    name: str, statements: Sequence[Statement], target: int, legend: Legend
) -> tuple[str, list[str]]:
    docs = "\n".join(f"D{n} = {doc_name}" for n, doc_name in legend.values())
    instruction = (
        f'Here are statements from summaries of the documents of "{name}". Combine '
        f"them into at most {target} statements about the collection as a whole. "
        'Write each on its own line starting with "- ", and end each with the '
        "document and pages it rests on, like [D2, p. 3] or [D1, pp. 3-4].\n\n"
        f"Documents:\n{docs}"
    )
    lines = [
        f"- [D{legend[s.document_id][0]}] {s.text} ({format_pages(s.pages)})" for s in statements
    ]
    return instruction, lines


def _within_document(
    name: str, statements: Sequence[Statement], target: int
) -> tuple[str, list[str]]:
    instruction = (
        f'Here are statements from a summary of "{name}", each ending with its '
        f"pages. Combine them into at most {target} statements that keep the most "
        'important points. Write each on its own line starting with "- ", and end '
        "each with the pages of the statements it combines, like (p. 3) or (pp. 3, 7)."
    )
    return instruction, [f"- {s.text} ({format_pages(s.pages)})" for s in statements]


@dataclass(frozen=True)
class _Reduction:
    """What every combining prompt of one reduce shares."""

    #: the document's or the collection's name
    name: str
    legend: Legend
    #: combine at least once, even when the statements are few enough already
    force: bool

    @classmethod
    def of(cls, statements: Sequence[Statement], name: str, force: bool) -> _Reduction:
        legend: Legend = {}
        for s in statements:
            legend.setdefault(s.document_id, (len(legend) + 1, s.document_name))
        return cls(name, legend, force)

    def messages(self, statements: Sequence[Statement], target: int) -> list[ChatMessage]:
        return reduce_messages(self.name, statements, target, self.legend)

    def numbers(self) -> dict[int, str]:
        """Document number ``Dn`` -> document id."""
        return {n: doc_id for doc_id, (n, _) in self.legend.items()}


class MapReduce:
    """Statements written by the model from each window, then combined."""

    mode = "generative"
    label = GENERATIVE_LABEL
    #: combining takes the last tenth of a document's progress
    map_share = 0.9

    def __init__(self, model: ResumableGenerator, quotes: Extractive) -> None:
        self.model = model
        self.quotes = quotes

    @property
    def gen(self) -> Generator:
        return self.model.generator

    def windows(self, doc: DocumentText, opts: SummaryOptions) -> list[Window]:
        n = opts.statements_per_window
        return token_windows(self.gen, doc.pieces, lambda t: map_messages(doc.name, t, n), opts)

    def per_window(self, limit: int, windows: int, opts: SummaryOptions) -> int:
        # A document that fits one window is summarized by that one prompt: its statements
        # are the summary (nothing to combine), so it asks for all of them.
        return limit if windows == 1 else opts.statements_per_window

    # -- map ------------------------------------------------------------------------------------

    def map(self, doc: DocumentText, window: Window, n: int, run: Run) -> list[Statement]:
        msgs = map_messages(doc.name, window.render(), n)
        output = self._generate(msgs, self._room(msgs, run.options, n), run)
        out = [
            Statement(parsed.text, doc.id, doc.name, window_pages(parsed, window))
            for parsed in parse_statements(output, n)
        ]
        if out:
            return out
        # Nothing usable came back (an empty or garbled answer): quote the window's
        # central sentences instead, so no part of the document goes unsummarized.
        run.stats.fallback_windows += 1
        return self.quotes.map(doc, window, n, run)

    def _room(self, msgs: list[ChatMessage], opts: SummaryOptions, statements: int = 0) -> int:
        """Tokens the model may write after ``msgs``: ``max_new_tokens`` per
        ``statements_per_window`` statements asked for (more for a one-window summary)."""
        share = max(1, -(-statements // opts.statements_per_window))
        room = self.gen.context_length - self.gen.count_tokens(msgs) - 1
        return min(opts.max_new_tokens * share, room)

    def _generate(self, msgs: list[ChatMessage], max_new: int, run: Run) -> str:
        return self.model.generate(msgs, run.options.sampling(max_new), run.control, run.stats)

    # -- reduce ---------------------------------------------------------------------------------

    def combine(
        self, statements: list[Statement], limit: int, run: Run, name: str, *, force: bool = False
    ) -> list[Statement]:
        """Combine statements until at most ``limit`` remain (``force``: at least once)."""
        reduction = _Reduction.of(statements, name, force)
        for round_ in range(_MAX_REDUCE_ROUNDS):
            if not statements or (len(statements) <= limit and not (force and round_ == 0)):
                return statements[:limit]
            groups = self._groups(statements, limit, run.options, reduction)
            if groups is None:
                return self.quotes.select(statements, limit, run.control)
            statements = self._round(groups, limit, run, reduction)
        if len(statements) > limit:  # the rounds did not converge
            return self.quotes.select(statements, limit, run.control)
        return statements

    def _groups(
        self, statements: Sequence[Statement], limit: int, opts: SummaryOptions, r: _Reduction
    ) -> list[list[Statement]] | None:
        """Consecutive runs of statements whose combining prompt fits the context; None
        when the model cannot combine them (its context is too small for that)."""
        try:
            overhead = self.gen.count_tokens(r.messages([], limit))
            budget, _ = token_budget(self.gen, overhead, opts)
        except InvalidInput:  # the instructions alone fill a small model's context
            return None
        costs = [self.gen.count_tokens(r.messages([s], limit)) - overhead for s in statements]
        groups = _runs(statements, costs, budget)
        if len(groups) > 1 and all(len(g) == 1 for g in groups):
            return None  # one statement fills a prompt
        return groups

    def _round(
        self, groups: list[list[Statement]], limit: int, run: Run, r: _Reduction
    ) -> list[Statement]:
        out: list[Statement] = []
        for group in groups:
            run.control.check()
            target = limit if len(groups) == 1 else max(1, min(limit, len(group) // 2))
            if len(group) <= target and not (r.force and len(groups) == 1):
                out += group
            else:
                out += self._reduce_group(group, target, run, r)
        return out

    def _reduce_group(
        self, group: list[Statement], target: int, run: Run, r: _Reduction
    ) -> list[Statement]:
        msgs = r.messages(group, target)
        max_new = self._room(msgs, run.options)
        if max_new < _MIN_ANSWER_TOKENS:
            return self.quotes.select(group, target, run.control)
        numbers = r.numbers()
        parsed = parse_statements(self._generate(msgs, max_new, run), target)
        out = [s for s in (attribute(p, group, numbers) for p in parsed) if s is not None]
        return out or self.quotes.select(group, target, run.control)


def _runs(
    statements: Sequence[Statement], costs: Sequence[int], budget: int
) -> list[list[Statement]]:
    """Consecutive statements in groups of at most ``budget`` (a longer one alone)."""
    groups: list[list[Statement]] = [[]]
    used = 0
    for s, n in zip(statements, costs, strict=True):
        if groups[-1] and used + n > budget:
            groups.append([])
            used = 0
        groups[-1].append(s)
        used += n
    return groups
