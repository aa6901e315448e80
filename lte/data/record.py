"""EditRecord: the one schema every benchmark format and the synthetic world map onto."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class QA:
    """A question and its acceptable answers; the first answer is canonical."""

    prompt: str
    answers: list[str]

    @property
    def answer(self) -> str:
        return self.answers[0]


@dataclass
class EditRecord:
    """One knowledge edit: ask `prompt` about `subject`, the answer becomes `target_new`."""

    case_id: str
    subject: str
    prompt: str
    target_new: str
    ground_truth: list[str] = field(default_factory=list)
    rephrase_prompts: list[str] = field(default_factory=list)
    portability: dict[str, list[QA]] = field(default_factory=dict)
    locality: dict[str, list[QA]] = field(default_factory=dict)
    source: str = ""

    @property
    def descriptor(self) -> str:
        """The sentence stored in memory and shown to the model (the paper's value)."""
        return edit_descriptor(self.prompt, self.target_new)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EditRecord:
        def qas(kinds: dict) -> dict[str, list[QA]]:
            return {k: [QA(q["prompt"], list(q["answers"])) for q in v] for k, v in kinds.items()}

        return cls(
            case_id=str(d["case_id"]), subject=d["subject"], prompt=d["prompt"],
            target_new=d["target_new"], ground_truth=list(d.get("ground_truth", [])),
            rephrase_prompts=list(d.get("rephrase_prompts", [])),
            portability=qas(d.get("portability", {})), locality=qas(d.get("locality", {})),
            source=d.get("source", ""),
        )


def edit_descriptor(prompt: str, target_new: str) -> str:
    """DESIGN.md's edit descriptor: the edit's question followed by its new answer."""
    return f"{prompt} {target_new}"
