"""The fixed calibration text of the build's accuracy check: the bundled sample documents.

``samples/docs/employee-handbook.md`` (English) and ``samples/docs/员工福利指南.md``
(Chinese), verbatim: the Markdown samples are already plain text, so nothing needs
extracting, and they are copied here because an installed docqa (the Docker image) has no
``samples/`` folder. ``tests/qa/llm/test_accuracy.py`` keeps the copies equal to the files.

``calibration_ids`` tokenizes each with the model's own tokenizer and keeps the first half
of the budget from each language (512 tokens by default: 256 English, 256 Chinese), so
every build of the same model is checked on exactly the same tokens.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from qa.errors import ConfigError

CALIBRATION_TOKENS = 512

ENGLISH = (
    "# Lumen Harbor Employee Handbook\n"
    "\n"
    "Lumen Harbor Ltd. is a fictional logistics software company with offices in Rotterdam,\n"
    "Lisbon and Shenzhen. This handbook explains how we work together. It is written for ever"
    "y\n"
    "employee, contractor and intern, and it is reviewed by the People team every January.\n"
    "\n"
    "## Working hours and flexibility\n"
    "\n"
    "Our core collaboration hours are 10:00 to 15:00 in the time zone of your home office.\n"
    "Outside core hours you may arrange your day as you like, provided your team knows how to"
    "\n"
    "reach you. Full-time employees work 38 hours per week on average over a month.\n"
    "\n"
    "Overtime must be agreed with your manager in advance. Approved overtime is compensated\n"
    "with time off at a rate of 1.5 hours for every hour worked, to be taken within three mon"
    "ths.\n"
    "\n"
    "## Annual leave\n"
    "\n"
    "Every full-time employee receives 27 days of paid annual leave per calendar year, plus t"
    "he\n"
    "public holidays of the country of their employment contract. Part-time employees receive"
    "\n"
    "leave in proportion to their contracted hours.\n"
    "\n"
    "- Up to 5 unused days may be carried over into the first quarter of the next year.\n"
    "- Leave requests of more than 10 consecutive working days need four weeks' notice.\n"
    "- During the December code freeze (15 December to 2 January) at least one engineer per\n"
    "  team must be on call.\n"
    "\n"
    "Sick leave is separate from annual leave. Report sickness to your manager before 10:00 o"
    "n\n"
    "the first day; from the third day of sickness a doctor's note is required.\n"
    "\n"
    "## Remote work\n"
    "\n"
    "Employees may work remotely up to three days per week. Fully remote arrangements are\n"
    'possible for roles marked "remote-eligible" and require the approval of the department h'
    "ead.\n"
    "When working abroad for more than 20 working days per year, you must inform the People\n"
    "team in advance because of tax and social security rules.\n"
    "\n"
    "The company provides a one-time home office budget of EUR 750 for a desk, chair or\n"
    "monitor. Receipts are submitted through the expense tool within 60 days of purchase.\n"
    "\n"
    "## Equipment and IT\n"
    "\n"
    "New employees receive a laptop on their first day. Laptops are replaced every four years"
    "\n"
    "or earlier when broken. Lost or stolen devices must be reported to the IT service desk\n"
    "within 24 hours by calling extension 4040 or writing to it-help@lumenharbor.example.\n"
    "\n"
    "Personal use of company equipment is allowed in moderation. Installing software that is\n"
    "not on the approved catalogue requires a ticket with the IT service desk.\n"
    "\n"
    "## Learning and development\n"
    "\n"
    "Each employee has a yearly learning budget of EUR 1,500 and five learning days. The budg"
    "et\n"
    "covers courses, conferences, certifications and books. Unused budget does not carry over"
    ".\n"
    "\n"
    "## Code of conduct\n"
    "\n"
    "We treat colleagues, customers and partners with respect. Harassment, discrimination and"
    "\n"
    "retaliation are not tolerated. Concerns can be raised with your manager, the People team"
    " or\n"
    "anonymously through the integrity hotline. Every report is investigated within 30 days.\n"
)

CHINESE = (
    "# 员工福利指南\n"
    "\n"
    "本指南适用于 Lumen Harbor 深圳办公室的全体正式员工，由人力资源部每"
    "年一月更新。\n"
    "\n"
    "## 带薪年假\n"
    "\n"
    "正式员工每年享有十五天带薪年假。入职满五年后，年假增加到二十天。未使用的年假最多"
    "可以结转五天到下一年第一季度，逾期作废。\n"
    "\n"
    "申请连续五个工作日以上的年假，需要提前两周在人事系统中提交申请，并由直属经理批准"
    "。\n"
    "\n"
    "## 病假与医疗\n"
    "\n"
    "员工每年享有十天全薪病假。病假超过两天需要提供医院出具的证明。公司为员工及其子女"
    "购买补充商业医疗保险，门诊报销比例为百分之八十。\n"
    "\n"
    "## 餐饮与交通补贴\n"
    "\n"
    "公司每月发放八百元餐饮补贴，随工资一起发放。加班至晚上九点以后，可以报销打车费用"
    "，需要在报销系统中上传行程单。\n"
    "\n"
    "## 培训与发展\n"
    "\n"
    "每位员工每年有一万元的培训预算，可用于课程、认证考试和专业书籍。参加外部培训需要"
    "提前一个月提出申请。\n"
    "\n"
    "## 联系方式\n"
    "\n"
    "如有疑问，请联系人力资源部：hr-shenzhen@lumenharbor.ex"
    "ample，或拨打内线电话 2020。\n"
)


def calibration_ids(hf_dir: Path, tokens: int = CALIBRATION_TOKENS) -> list[int]:
    """``tokens`` ids: the first half from the English sample, the rest from the Chinese."""
    key = (_tokenizer_key(hf_dir), tokens)
    if key not in _CACHE:
        _CACHE[key] = _ids(hf_dir, tokens)
    return list(_CACHE[key])


#: files that decide tokenization (Qwen's folder has no tokenizer.json: building the fast
#: tokenizer from vocab.json + merges.txt takes ~9 s, so equal files are tokenized once)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json")


def _tokenizer_key(hf_dir: Path) -> str:
    h = hashlib.sha256()
    for name in _TOKENIZER_FILES:
        path = hf_dir / name
        h.update(name.encode() + (path.read_bytes() if path.is_file() else b"-"))
    return h.hexdigest()


_CACHE: dict[tuple[str, int], tuple[int, ...]] = {}


def _ids(hf_dir: Path, tokens: int) -> tuple[int, ...]:
    # In a child process: transformers, and the torch it imports, never leave a process
    # once loaded (0.34 GB of anonymous memory), and the build that needs these 512 ids
    # must stay under 1 GB while it writes and checks the full 4B model.
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        with pool:
            return pool.submit(_tokenize, str(hf_dir), tokens).result()
    except BrokenProcessPool as exc:
        raise ConfigError(f"{hf_dir}: the tokenizer process died ({exc})") from exc


def _tokenize(hf_dir: str, tokens: int) -> tuple[int, ...]:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, TypeError...: all
        # mean the folder's tokenizer is unusable, and only our error crosses the process
        raise ConfigError(f"{hf_dir}: tokenizer does not load ({exc})") from exc
    half = tokens // 2
    en = tok(ENGLISH, add_special_tokens=False)["input_ids"][:half]
    zh = tok(CHINESE, add_special_tokens=False)["input_ids"][: tokens - len(en)]
    return tuple(int(t) for t in en + zh)
