"""``docqa eval answers``: answer quality of the product on a SQuAD-format file.

    docqa eval answers ../shared/corpus/qa/xquad/xquad.en.json \\
        --off-topic samples/eval/off_topic.en.jsonl \\
        --off-topic ../shared/corpus/retrieval/scifact/queries.jsonl --limit 300

The work is ``ingest.answer_evaluation.evaluate_answers``; this module only prints it (a
table, or ``--json`` for machines). Progress goes to stderr.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from rich.table import Table

from cli.console import out, stage_progress_bar
from ingest.answer_evaluation import MODES, AnswerEvalReport
from qa.limits import MAX_EVAL_QUESTIONS
from qa.settings import Settings


@click.command("answers")
@click.argument("squad_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--off-topic",
    "off_topic",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON lines of questions the documents do not answer ('question', 'query' or "
    "'text' per line), which should be declined (repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_EVAL_QUESTIONS),
    default=None,
    help="Only the first N questions of the file and of each off-topic set.",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="auto",
    show_default=True,
    help="auto: the model when one is built, like docqa ask.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option(
    "--details",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every question's result (outcome, match, answer) to this JSON-lines file.",
)
@click.pass_obj
def eval_answers_command(
    settings: Settings,
    squad_json: Path,
    off_topic: tuple[Path, ...],
    limit: int | None,
    mode: str,
    as_json: bool,
    details: Path | None,
) -> None:
    """Answer recall, citation precision, declines and latency on SQUAD_JSON (SQuAD v1.1
    or v2.0 format; one document per article), asked through the answer service."""
    from ingest.answer_evaluation import evaluate_answers

    with stage_progress_bar("loading") as on_progress:
        report = evaluate_answers(
            squad_json,
            settings=settings,
            off_topic=off_topic,
            limit=limit,
            mode=mode,  # type: ignore[arg-type]  # click.Choice(MODES)
            progress=on_progress,
        )
    if details is not None:
        with details.open("w", encoding="utf-8") as fh:
            for asked in report.results:
                fh.write(json.dumps(asdict(asked), ensure_ascii=False) + "\n")
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        _print(report)


def _share(x: float | None, of: int | None = None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" + (f" (of {of})" if of is not None else "")


def _print(report: AnswerEvalReport) -> None:
    table = Table(title=f"answers on {Path(report.dataset).name} ({report.mode})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("answer recall", _share(report.answer_recall, report.answerable))
    table.add_row("citation precision", _share(report.citation_precision, report.cited))
    table.add_row("false declines", _share(report.false_decline_rate, report.answerable))
    if report.impossible:
        table.add_row(
            "declines, impossible questions",
            _share(report.impossible_decline_rate, report.impossible),
        )
    for s in report.off_topic:
        table.add_row(f"declines, off-topic {s.name}", _share(s.decline_rate, s.questions))
    if len(report.off_topic) > 1:
        table.add_row(
            "declines, all off-topic",
            _share(report.off_topic_decline_rate, report.off_topic_questions),
        )
    table.add_row("latency p50 ms", f"{report.latency_p50_ms:.1f}")
    table.add_row("latency p95 ms", f"{report.latency_p95_ms:.1f}")
    if report.prompt_tokens_mean is not None and report.prompt_tokens_p95 is not None:
        table.add_row("prompt tokens, mean", f"{report.prompt_tokens_mean:.0f}")
        table.add_row("prompt tokens, p95", f"{report.prompt_tokens_p95:.0f}")
    if report.errors:
        table.add_row("errors", str(report.errors))
    out.print(table)
    how = "reused" if report.index_cached else "built"
    out.print(
        f"SQuAD {report.version}: {report.documents} documents, {report.chunks} chunks,"
        f" {report.model_id}; index {how} in {report.index_dir}"
    )
