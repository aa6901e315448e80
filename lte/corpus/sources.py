"""The corpus inputs: edit records (read, leakage-filtered, deduplicated) and instructions.

Everything here runs once on the driver; its outputs are small next to the corpus (one record per
edit, one instruction per linguistic pair), so a cluster build ships them to workers as rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lte.config import CorpusConfig, CorpusSource
from lte.corpus.leakage import SubjectMatcher, TextLeakage, filter_instructions, filter_records
from lte.data.record import QA, EditRecord
from lte.errors import UserError

Instruction = tuple[str, QA]  # (key unique within its source, instruction and its response)

WIKIBIO_FORMAT = "knowedit_wikibio"
WORLD_SOURCE = "world"  # source name of the synthesised world
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def subject_key(subject: str) -> str:
    """Subjects compare case- and space-insensitively (WikiBio writes them in lower case)."""
    return " ".join(subject.casefold().split())


@dataclass
class Inputs:
    """What the driver hands to construction, plus the counts the manifest reports."""

    records: list[EditRecord]
    formats: dict[str, str]  # source name -> reader format
    instructions: list[tuple[str, list[Instruction]]]  # (source name, its instructions)
    hashes: dict[str, str] = field(default_factory=dict)  # input file -> sha256
    read: dict[str, int] = field(default_factory=dict)  # source -> records read
    empty_targets: int = 0  # records whose new answer is empty (unusable), skipped
    duplicates: int = 0  # records repeating (subject, prompt, target_new) of an earlier one
    leakage: dict[str, int] = field(default_factory=dict)  # evaluation file -> records dropped
    leakage_total: int = 0  # records dropped for leakage (a record may match several files)
    text_leakage: TextLeakage = field(default_factory=TextLeakage)  # dropped by question text


def _check_file(path: str, what: str) -> None:
    if not Path(path).is_file():
        raise UserError(f"{what} file not found", file=path)


def read_source(src: CorpusSource) -> tuple[str, str, list[EditRecord]]:
    """(source name, format, records) of one configured source file."""
    from lte.data.readers import detect_format, read_records, source_name

    _check_file(src.path, "source")
    fmt = src.format or detect_format(src.path)
    name = src.name or source_name(src.path)
    records = read_records(src.path, fmt)
    return name, fmt, [dataclasses.replace(r, source=name) for r in records]


def evaluation_subjects(paths: list[str]) -> dict[str, set[str]]:
    from lte.data.readers import iter_records

    out = {}
    for path in paths:
        _check_file(path, "evaluation")
        out[path] = {subject_key(r.subject) for r in iter_records(path)}
    return out


def drop_leakage(records: list[EditRecord], eval_subjects: dict[str, set[str]],
                 ) -> tuple[list[EditRecord], dict[str, int], int]:
    """Records whose subject is in no evaluation file; dropped counts per file and in total."""
    dropped = dict.fromkeys(eval_subjects, 0)
    kept, total = [], 0
    for r in records:
        key = subject_key(r.subject)
        hits = [path for path, subjects in eval_subjects.items() if key in subjects]
        for path in hits:
            dropped[path] += 1
        if hits:
            total += 1
        else:
            kept.append(r)
    return kept, dropped, total


def dedupe_records(records: list[EditRecord]) -> tuple[list[EditRecord], int]:
    """The first record of each (subject, prompt, target_new); the same edit twice adds nothing."""
    seen, kept = set(), []
    for r in records:
        key = (subject_key(r.subject), r.prompt, r.target_new)
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return kept, len(records) - len(kept)


def continuation_instructions(records: list[EditRecord]) -> list[Instruction]:
    """Free text from WikiBio passages: continue all but the last sentence with the last.

    The passage is the text before the edit, so its own last sentence is the unedited response.
    """
    out = []
    for r in records:
        sentences = _SENTENCE_END.split(r.prompt.strip())
        if len(sentences) < 3:  # the header sentence plus at least two of the passage
            continue
        prompt = "Continue the passage: " + " ".join(sentences[:-1])
        out.append((f"{r.case_id}/cont", QA(prompt, [sentences[-1]])))
    return out


def description_instructions(records: list[EditRecord]) -> list[Instruction]:
    """'Tell me about <subject>' answered with the subject's unedited facts, one per sentence."""
    facts: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for r in records:
        if r.ground_truth:
            key = subject_key(r.subject)
            names.setdefault(key, r.subject)
            facts.setdefault(key, []).append(f"{r.prompt} {r.ground_truth[0]}.")
    return [(f"desc/{key}", QA(f"Tell me what you know about {names[key]}.",
                               [" ".join(sorted(set(facts[key])))]))
            for key in sorted(facts)]


def world_instructions(n: int, seed: int) -> list[Instruction]:
    """The synthetic world's own instructions about its unedited facts (lte.data.synth)."""
    from lte.data.synth import world_instructions as make

    return list(make(n, seed))


def derived_instructions(cfg: CorpusConfig, records: list[EditRecord],
                         formats: dict[str, str]) -> list[tuple[str, list[Instruction]]]:
    """(group name, instructions) for each kind in `cfg.derived_instructions`."""
    groups = []
    for kind in cfg.derived_instructions:
        if kind == "world":
            if cfg.synth_edits <= 0:
                raise UserError("derived_instructions 'world' needs a synthesised world "
                                "(corpus.synth_edits > 0)", field="corpus.derived_instructions")
            # Person i of the world is record i: instructions about a person whose edit was
            # dropped (leakage) would bring the evaluation subject back.
            kept = {r.case_id for r in records if r.source == WORLD_SOURCE}
            groups.append(("world-instructions",
                           [(key, qa) for key, qa in world_instructions(cfg.synth_edits,
                                                                        cfg.synth_seed)
                            if key.rsplit(":", 1)[-1] in kept]))
        elif kind == "continuation":
            by_source: dict[str, list[EditRecord]] = {}
            for r in records:
                if formats.get(r.source) == WIKIBIO_FORMAT:
                    by_source.setdefault(r.source, []).append(r)
            groups += [(f"{name}-continuation", continuation_instructions(rs))
                       for name, rs in sorted(by_source.items())]
        elif kind == "descriptions":
            groups.append(("descriptions", description_instructions(records)))
    return groups


_INSTRUCTION_FIELDS = ("instruction", "prompt", "input", "question")
_RESPONSE_FIELDS = ("output", "response", "answer", "completion")
_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet",
             ".txt": "text", ".arrow": "arrow"}


def _pick(columns: list[str], wanted: str | None, defaults: tuple[str, ...], what: str,
          path: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise UserError(f"no {what} column '{wanted}'; columns: {', '.join(columns)}",
                            file=path, field=f"corpus.{what}_field")
        return wanted
    for name in defaults:
        if name in columns:
            return name
    raise UserError(f"no {what} column among {', '.join(defaults)}; columns: "
                    f"{', '.join(columns)} (set corpus.{what}_field)", file=path)


def _conversation_pair(turns: object, path: str, index: int) -> tuple[str, str]:
    """ShareGPT/WizardLM `conversations`: the first human turn and the reply after it."""
    if isinstance(turns, list) and len(turns) >= 2 and all(isinstance(t, dict) for t in turns[:2]):
        first, second = turns[0], turns[1]
        text = first.get("value", first.get("content"))
        reply = second.get("value", second.get("content"))
        if isinstance(text, str) and isinstance(reply, str):
            return text, reply
    raise UserError("expected a list of at least two {from, value} turns", file=path,
                    record=index, field="conversations")


def file_instructions(path: str, instruction_field: str | None = None,
                      response_field: str | None = None) -> list[Instruction]:
    """(instruction, response) pairs of a local file in any format `datasets` reads."""
    import datasets

    _check_file(path, "instruction")
    builder = _BUILDERS.get(Path(path).suffix.lower())
    if builder is None:
        raise UserError(f"unknown instruction file type; use one of {', '.join(_BUILDERS)}",
                        file=path)
    try:
        ds = datasets.load_dataset(builder, data_files=path, split="train")
    except (ValueError, OSError, datasets.exceptions.DatasetGenerationError) as e:
        raise UserError(f"cannot read instructions ({str(e).splitlines()[0]})",
                        file=path) from None
    columns = list(ds.column_names)
    out = []
    if instruction_field is None and "conversations" in columns:
        for i, row in enumerate(ds):
            text, reply = _conversation_pair(row["conversations"], path, i)
            out.append((str(i), QA(text, [reply])))
        return out
    ins = _pick(columns, instruction_field, _INSTRUCTION_FIELDS, "instruction", path)
    res = _pick(columns, response_field, _RESPONSE_FIELDS, "response", path)
    for i, row in enumerate(ds):
        text, reply = row[ins], row[res]
        for name, value in ((ins, text), (res, reply)):
            if not isinstance(value, str) or not value.strip():
                raise UserError("must be a non-empty string", file=path, record=i, field=name)
        out.append((str(i), QA(text, [reply])))
    return out


def cap_instructions(groups: list[tuple[str, list[Instruction]]], cap: int | None,
                     seed: int) -> list[tuple[str, list[Instruction]]]:
    """At most `cap` instructions per group: a seeded sample, kept in file order."""
    if cap is None:
        return groups
    out = []
    for name, items in groups:
        if len(items) > cap:
            rng = random.Random(f"{seed}:instructions:{name}")
            items = [items[i] for i in sorted(rng.sample(range(len(items)), cap))]
        out.append((name, items))
    return out


def load_inputs(cfg: CorpusConfig, world_path: str | None = None) -> Inputs:
    """Read every source, drop evaluation subjects and duplicates, gather instructions."""
    sources = list(cfg.sources)
    if world_path is not None:
        sources.append(CorpusSource(path=world_path, format="knowedit_zsre", name=WORLD_SOURCE))
    if not sources:
        raise UserError("no edit sources: set corpus.sources or corpus.synth_edits",
                        field="corpus.sources")
    records, formats, read, hashes = [], {}, Counter(), {}
    for src in sources:
        name, fmt, recs = read_source(src)
        if name in formats:
            raise UserError(f"two sources are named '{name}'; give one a `name`", file=src.path,
                            field="corpus.sources")
        formats[name] = fmt
        read[name] = len(recs)
        hashes[src.path] = file_sha256(src.path)
        records += recs
    empty = sum(1 for r in records if not r.target_new.strip())
    records = [r for r in records if r.target_new.strip()]
    eval_subjects = evaluation_subjects(cfg.evaluation)
    for path in cfg.evaluation:
        hashes[path] = file_sha256(path)
    records, leakage, leakage_total = drop_leakage(records, eval_subjects)
    records, duplicates = dedupe_records(records)
    matcher = SubjectMatcher(set().union(*eval_subjects.values()), cfg.leakage_min_chars)
    text_leakage = TextLeakage()
    records = filter_records(records, matcher, text_leakage)

    groups = derived_instructions(cfg, records, formats)
    if cfg.instructions:
        groups.append((Path(cfg.instructions).stem,
                       file_instructions(cfg.instructions, cfg.instruction_field,
                                         cfg.response_field)))
        hashes[cfg.instructions] = file_sha256(cfg.instructions)
    groups = cap_instructions(filter_instructions(groups, matcher, text_leakage),
                              cfg.max_instructions, cfg.seed)
    return Inputs(records=records, formats=formats, instructions=groups, hashes=hashes,
                  read=dict(read), empty_targets=empty, duplicates=duplicates, leakage=leakage,
                  leakage_total=leakage_total, text_leakage=text_leakage)
