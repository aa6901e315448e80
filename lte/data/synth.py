"""A synthetic world of fictional people and their facts, with counterfactual edits.

The world is the embedded default's data: it is written in the KnowEdit ZsRE shape, so the same
reader, corpus and evaluation code serve it and the real benchmarks. People have made-up,
pronounceable names; each person has one fact per relation and one edit that replaces one fact
by another object of the same type. The places, companies, languages and other objects are a
fixed geography that does not depend on the seed (so a model can know them); the people and their
facts do depend on it.

Everything about record `i` comes from an integer hash of (seed, i, ...), so records are
generated one at a time with no per-world state, the output is identical for a seed, and a
million records stream to disk in about a minute.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lte.data.record import QA, EditRecord
from lte.errors import UserError

MAX_EDITS = 1_000_000
_MASK = (1 << 64) - 1

# Consonant-vowel syllables: a name made of them splits back into syllables one way only, so
# distinct syllable sequences give distinct names.
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
SYLLABLES = tuple(o + v for o in _ONSETS for v in _VOWELS)
_CODAS = ("", "n", "r", "s", "l", "k")
_S = len(SYLLABLES)
_NAME_SPACE = _S ** 4  # first name 2 syllables + last name 2 syllables


def _mix(*parts: int) -> int:
    """splitmix64 over the parts: a fast, well-spread integer hash."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (p & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        x ^= x >> 31
        x = x * 0x94D049BB133111EB & _MASK
        x ^= x >> 29
    return x


def _fast_mix(key: int, i: int) -> int:
    """A keyed 64-bit hash of i (one splitmix64 finaliser): the per-person hot path."""
    x = (key + i * 0x9E3779B97F4A7C15) & _MASK
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


def _syllables(code: int, count: int) -> str:
    out = []
    for _ in range(count):
        code, s = divmod(code, _S)
        out.append(SYLLABLES[s])
    return "".join(out)


_TWO = tuple((a + b).capitalize() for a in SYLLABLES for b in SYLLABLES)  # every 2-syllable word


def _word(h: int, count: int) -> str:
    return _syllables(h, count) + _CODAS[(h >> 40) % len(_CODAS)]


def random_name(rng, syllables: tuple[int, int] = (2, 3), words: int = 1) -> str:
    """A fresh made-up name from `rng` (a random.Random), e.g. for never-seen objects."""
    parts = []
    for _ in range(words):
        n = rng.randint(*syllables)
        w = "".join(rng.choice(SYLLABLES) for _ in range(n)) + rng.choice(_CODAS)
        parts.append(w.capitalize())
    return " ".join(parts)


def fresh_object(relation: int, rng) -> str | None:
    """A made-up object of the relation's type that the world's pools need not contain (None for
    closed classes such as professions): used to train copying, which memorising cannot fake."""
    name = RELATIONS[relation].name
    if name == "birthplace":
        return random_name(rng, (2, 3))
    if name == "employer":
        return random_name(rng, (2, 2)) + " " + rng.choice(_COMPANY_SUFFIXES)
    if name == "language":
        return random_name(rng, (2, 2)).rstrip("nrslk") + rng.choice(_LANGUAGE_SUFFIXES)
    if name == "spouse":
        return random_name(rng, (2, 2), words=2)
    return None


# --------------------------------------------------------------------------------------------
# The fixed geography: objects and their own facts (for two-hop questions). Seed-independent.
# --------------------------------------------------------------------------------------------

_GEO_SEED = 20240217
PROFESSIONS = (
    "architect", "baker", "carpenter", "chemist", "dentist", "diplomat", "engineer", "farmer",
    "fisher", "gardener", "geologist", "historian", "journalist", "judge", "librarian",
    "mechanic", "musician", "nurse", "painter", "pharmacist", "photographer", "pilot", "poet",
    "potter", "sailor", "sculptor", "surgeon", "tailor", "teacher", "translator",
)
FIELDS = ("design", "food", "craft", "science", "health", "politics", "industry", "nature",
          "humanities", "media", "law", "arts", "transport")
_PROFESSION_FIELD = dict(zip(PROFESSIONS, (
    "design", "food", "craft", "science", "health", "politics", "industry", "nature", "nature",
    "nature", "science", "humanities", "media", "law", "humanities", "industry", "arts",
    "health", "arts", "health", "media", "transport", "arts", "craft", "transport", "arts",
    "health", "craft", "humanities", "humanities"), strict=True))
INSTRUMENTS = (
    "violin", "cello", "harp", "guitar", "lute", "flute", "clarinet", "oboe", "bassoon",
    "trumpet", "trombone", "horn", "tuba", "drums", "marimba", "piano", "organ", "harpsichord",
)
_INSTRUMENT_FAMILY = dict(zip(INSTRUMENTS, (
    "strings", "strings", "strings", "strings", "strings", "woodwinds", "woodwinds", "woodwinds",
    "woodwinds", "brass", "brass", "brass", "brass", "percussion", "percussion", "keyboards",
    "keyboards", "keyboards"), strict=True))
_COMPANY_SUFFIXES = ("Works", "Labs", "Group", "Systems", "Foods", "Motors", "Textiles")
_LANGUAGE_SUFFIXES = ("ish", "ese", "ian", "ol")


def _pool(kind: int, size: int, make) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    k = 0
    while len(seen) < size:
        seen.setdefault(make(_mix(_GEO_SEED, kind, k)), None)
        k += 1
    return tuple(seen)


COUNTRIES = _pool(1, 40, lambda h: _syllables(h, 2).capitalize() + ("ria", "land", "stan", "via")[h >> 50 & 3])
CITIES = _pool(2, 400, lambda h: _word(h, 2 + (h >> 45) % 2).capitalize())
LANGUAGES = _pool(3, 60, lambda h: _syllables(h, 2).capitalize() + _LANGUAGE_SUFFIXES[h >> 50 & 3])
COMPANIES = _pool(4, 300, lambda h: _word(h, 2).capitalize() + " "
                  + _COMPANY_SUFFIXES[(h >> 52) % len(_COMPANY_SUFFIXES)])
CITY_COUNTRY = {c: COUNTRIES[_mix(_GEO_SEED, 5, i) % len(COUNTRIES)] for i, c in enumerate(CITIES)}
LANGUAGE_COUNTRY = {lang: COUNTRIES[_mix(_GEO_SEED, 6, i) % len(COUNTRIES)]
                    for i, lang in enumerate(LANGUAGES)}
COMPANY_CITY = {c: CITIES[_mix(_GEO_SEED, 7, i) % len(CITIES)] for i, c in enumerate(COMPANIES)}


# --------------------------------------------------------------------------------------------
# Relations: question templates (the first is the edit's own question, the rest paraphrase it),
# the object pool, and a two-hop question whose answer follows from the object.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Relation:
    name: str
    templates: tuple[str, ...]
    pool: tuple[str, ...] | None  # None: the object is another person of the world
    hop_template: str
    statement: str  # for descriptions: "{s} ... {o}"


RELATIONS = (
    Relation("birthplace", (
        "Where was {s} born?", "In which city was {s} born?", "What is the birthplace of {s}?",
        "{s} was born in which city?"),
        CITIES, "In which country was {s} born?", "{s} was born in {o}"),
    Relation("occupation", (
        "What is the occupation of {s}?", "What does {s} do for a living?",
        "What job does {s} have?", "Which profession does {s} work in?"),
        PROFESSIONS, "In which field does {s} work?", "{s} works as {a} {o}"),
    Relation("employer", (
        "Which company employs {s}?", "Who is the employer of {s}?",
        "Which company does {s} work for?", "{s} is employed by which company?"),
        COMPANIES, "In which city is the employer of {s} based?", "{s} works for {o}"),
    Relation("language", (
        "What language does {s} speak?", "Which language is spoken by {s}?",
        "What is the native language of {s}?", "{s} speaks which language?"),
        LANGUAGES, "In which country is the language of {s} spoken?", "{s} speaks {o}"),
    Relation("instrument", (
        "Which instrument does {s} play?", "What instrument is played by {s}?",
        "What is the favourite instrument of {s}?", "{s} plays which instrument?"),
        INSTRUMENTS, "Which instrument family does the instrument of {s} belong to?",
        "{s} plays the {o}"),
    Relation("spouse", (
        "Who is {s} married to?", "Who is the spouse of {s}?", "Whom did {s} marry?",
        "{s} is married to whom?"),
        None, "Where was the spouse of {s} born?", "{s} is married to {o}"),
)
RELATION_INDEX = {r.name: i for i, r in enumerate(RELATIONS)}


def _zipf_table(size: int, slots: int = 1024, s: float = 1.0) -> tuple[int, ...]:
    """Slot -> pool index with Zipf(s) frequencies: original facts are skewed as real ones are
    (a few cities are common), so a model's guess about an unknown person is a clear default
    rather than a near-tie that any context could flip."""
    weights = [1 / (k + 1) ** s for k in range(size)]
    total, acc, out = sum(weights), 0.0, []
    k = 0
    for slot in range(slots):
        target = (slot + 0.5) / slots * total
        while acc + weights[k] < target:
            acc += weights[k]
            k += 1
        out.append(k)
    return tuple(out)


# Per relation with a pool: 10 bits of a person's fact hash -> index into the pool.
_FACT_TABLE = {i: _zipf_table(len(r.pool)) for i, r in enumerate(RELATIONS) if r.pool}
_BIRTHPLACE = RELATION_INDEX["birthplace"]


# --------------------------------------------------------------------------------------------
# People of a seed's world
# --------------------------------------------------------------------------------------------


class World:
    """The people of one seed: names, facts and edits, each computed from a hash on demand.

    Person i has two 64-bit hashes: `_facts(i)` holds one 10-bit field per relation (the index
    of the original object), `_meta(i)` the edited relation, the name's coda, the spouse and the
    edit's target; everything else about i is read from their bits.
    """

    def __init__(self, seed: int):
        self.seed = seed
        # An affine bijection of the name space: distinct people get distinct names.
        self._a = (_mix(seed, 11) % _NAME_SPACE) | 1
        while self._a % 5 == 0:
            self._a += 2
        self._b = _mix(seed, 12) % _NAME_SPACE
        self._k1 = _mix(seed, 1)
        self._k2 = _mix(seed, 2)
        self._k4 = _mix(seed, 4)

    def _facts(self, i: int) -> int:
        return _fast_mix(self._k1, i)

    def _meta(self, i: int) -> int:
        return _fast_mix(self._k2, i)

    def name(self, i: int, meta: int | None = None) -> str:
        code = (i * self._a + self._b) % _NAME_SPACE
        first, last = divmod(code, _S * _S)
        meta = self._meta(i) if meta is None else meta
        return f"{_TWO[first]} {_TWO[last]}{_CODAS[(meta >> 3) % len(_CODAS)]}"

    def spouse_index(self, i: int, meta: int | None = None) -> int:
        meta = self._meta(i) if meta is None else meta
        return i + 1 + (meta >> 8) % 999_983

    def fact(self, i: int, r: int, facts: int | None = None) -> str:
        """Person i's original object for relation r."""
        pool = RELATIONS[r].pool
        if pool is None:  # spouse: another person of the world
            return self.name(self.spouse_index(i))
        facts = self._facts(i) if facts is None else facts
        return pool[_FACT_TABLE[r][facts >> (10 * r) & 1023]]

    def edit_target(self, i: int, r: int) -> tuple[str, int | None]:
        """A new object of the same type, never the original; for spouse also its person id."""
        meta = self._meta(i)
        h = meta >> 28
        pool = RELATIONS[r].pool
        if pool is None:
            j = self.spouse_index(i, meta) + 1 + h % 1_000_003
            return self.name(j), j
        orig = _FACT_TABLE[r][self._facts(i) >> (10 * r) & 1023]
        return pool[(orig + 1 + h % (len(pool) - 1)) % len(pool)], None

    def hop_answer(self, r: int, obj: str, person: int | None) -> str:
        name = RELATIONS[r].name
        if name == "birthplace":
            return CITY_COUNTRY[obj]
        if name == "occupation":
            return _PROFESSION_FIELD[obj]
        if name == "employer":
            return COMPANY_CITY[obj]
        if name == "language":
            return LANGUAGE_COUNTRY[obj]
        if name == "instrument":
            return _INSTRUMENT_FAMILY[obj]
        return self.fact(person, _BIRTHPLACE)

    def description(self, i: int) -> str:
        """One sentence of a person's (original) facts, for instruction-style data."""
        s = self.name(i)
        h = _mix(self.seed, 7, i)
        rels = sorted({h % len(RELATIONS), (h >> 8) % len(RELATIONS)})
        parts = []
        for k, r in enumerate(rels):
            o = self.fact(i, r)
            parts.append(RELATIONS[r].statement.format(
                s=s if k == 0 else "", o=o, a="an" if o[0] in "aeiou" else "a").strip())
        return " and ".join(parts) + "."

    def record(self, i: int, n: int) -> dict:
        """Edit i of a world of n edits, as a KnowEdit ZsRE record."""
        meta, facts = self._meta(i), self._facts(i)
        s = self.name(i, meta)
        r = meta % len(RELATIONS)
        rel = RELATIONS[r]
        target, person = self.edit_target(i, r)
        h = _fast_mix(self._k4, i)
        n_rel = len(RELATIONS)
        # Two paraphrases (of three) in a per-record order, so no paraphrase is the only test.
        para = [t.format(s=s) for t in rel.templates[1:]]
        k = h % len(para)
        para = para[k:] + para[:k]
        locality = []
        # Two other relations of the same subject: the edit must leave them alone.
        d1 = 1 + (h >> 4) % (n_rel - 1)
        d2 = 1 + (d1 + (h >> 8) % (n_rel - 2)) % (n_rel - 1)
        for m, d in enumerate((d1, d2)):
            r2 = (r + d) % n_rel
            t = RELATIONS[r2].templates[(h >> (12 + 2 * m)) % 4]
            locality.append({"prompt": t.format(s=s), "ground_truth": [self.fact(i, r2, facts)]})
        # Other subjects, the same relation and another one; never a fact that is itself edited.
        span = max(n - 1, 1)
        for m in (0, 1):
            j = (i + 1 + (h >> (20 + 20 * m)) % span) % max(n, 2)
            if j == i:
                j = i + 1
            meta_j = self._meta(j)
            r2 = r if m == 0 else (r + 1 + (h >> 16) % (n_rel - 1)) % n_rel
            if r2 == meta_j % n_rel:
                r2 = (r2 + 1) % n_rel
            t = RELATIONS[r2].templates[(h >> (60 + 2 * m)) % 4]
            locality.append({"prompt": t.format(s=self.name(j, meta_j)),
                             "ground_truth": [self.fact(j, r2)]})
        return {
            "case_id": i,
            "subject": s,
            "relation": rel.name,
            "prompt": rel.templates[0].format(s=s),
            "target_new": target,
            "ground_truth": [self.fact(i, r, facts)],
            "rephrase_prompt": para[:2],
            "portability": {"Reasoning": [{"prompt": rel.hop_template.format(s=s),
                                           "ground_truth": [self.hop_answer(r, target, person)]}]},
            "locality": {"Relation_Specificity": locality},
        }


def _check_n(n_edits: int) -> None:
    if isinstance(n_edits, bool) or not isinstance(n_edits, int) or not 1 <= n_edits <= MAX_EDITS:
        raise UserError(f"--edits must be an integer from 1 to {MAX_EDITS:,}, got {n_edits!r}",
                        field="edits")


def generate_world(n_edits: int, seed: int = 0, start: int = 0) -> Iterator[dict]:
    """The edits `start .. n_edits-1` of the world of `seed` (one record per person)."""
    _check_n(n_edits)
    world = World(seed)
    for i in range(start, n_edits):
        yield world.record(i, n_edits)


def write_world(path: str | Path, n_edits: int, seed: int = 0, progress: bool = False) -> Path:
    """Stream the world to a JSON list file; the same (n_edits, seed) gives the same bytes."""
    _check_n(n_edits)
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise UserError("output folder does not exist", file=str(path.parent))
    tmp = path.with_name(path.name + ".tmp")
    records = generate_world(n_edits, seed)
    if progress:
        from tqdm import tqdm

        records = tqdm(records, total=n_edits, desc="synth", unit="edit")
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as f:
        f.write("[\n")
        buf = []
        for k, rec in enumerate(records):
            buf.append(("" if k == 0 else ",\n") + dumps(rec))
            if len(buf) >= 4096:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))
        f.write("\n]\n")
    tmp.replace(path)  # a crash never leaves a half-written world under the real name
    return path


def to_edit_record(d: dict, source: str = "synth") -> EditRecord:
    """A world record as an EditRecord (what the KnowEdit ZsRE reader makes of the file)."""
    def qas(kinds: dict) -> dict[str, list[QA]]:
        return {k: [QA(q["prompt"], list(q["ground_truth"])) for q in v] for k, v in kinds.items()}

    return EditRecord(
        case_id=str(d["case_id"]), subject=d["subject"], prompt=d["prompt"],
        target_new=d["target_new"], ground_truth=list(d["ground_truth"]),
        rephrase_prompts=list(d["rephrase_prompt"]), portability=qas(d["portability"]),
        locality=qas(d["locality"]), source=source,
    )


def synth_records(n_edits: int, seed: int = 0, source: str = "synth") -> list[EditRecord]:
    """The first `n_edits` edits of the world of `seed`: the tiny record source of tests, smoke
    corpora and load tests."""
    return [to_edit_record(d, source) for d in generate_world(n_edits, seed)] if n_edits else []


def record_texts(records: Iterable[EditRecord]) -> list[str]:
    """Every question and answer of `records` (text to train a tiny tokenizer on)."""
    texts = []
    for r in records:
        texts += [r.descriptor, r.target_new, *r.ground_truth, *r.rephrase_prompts]
        for qas in (*r.portability.values(), *r.locality.values()):
            texts += [f"{qa.prompt} {qa.answer}" for qa in qas]
    return texts


def world_instructions(n: int, seed: int = 0, start: int = 0) -> Iterator[tuple[str, QA]]:
    """(key, QA) instruction pairs about original facts (linguistic capability).

    "Describe X." answered by a sentence of X's facts, and a few text tasks (repeat, spell)
    whose answer depends only on the instruction, so an edit in the context must not change it.
    """
    world = World(seed)
    for i in range(start, start + n):
        s = world.name(i)
        h = _mix(seed, 8, i)
        kind = h % 3
        if kind == 0:
            prompt, answer = f"Describe {s}.", world.description(i)
        elif kind == 1:
            prompt, answer = f"Repeat the name {s}.", s
        else:
            first = s.split()[0]
            prompt, answer = f"Spell the name {first}.", " ".join(first.upper())
        yield f"{seed}:{i}", QA(prompt, [answer])
