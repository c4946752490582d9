"""What a render returns and writes in its report: per-line records, totals, the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dialog_tts.errors import DialogTTSError
from dialog_tts.synth.engine import Stats


@dataclass
class LineRecord:
    """What happened to one spoken line."""

    line: int
    speaker: str
    text: str
    backend: str
    voice: str
    cache_hit: bool = False
    source: str = ""               # synthesized, cache, repeat or failed
    attempts: int = 0
    synthesis_seconds: float = 0.0
    start: float | None = None     # seconds into the output file
    end: float | None = None
    error: str | None = None
    #: The quality gate's record: checks and figures of the kept take, every take made, which was kept,
    #: whether the line is flagged (kept though no take passed) or warned (failed only soft checks); a cached
    #: line's take is judged again from the figures kept with it.  None: not checked (--check none).
    quality: dict[str, Any] | None = None
    #: For a line kept although no take passed (--keep-going): the checks it failed (the review page shows them).
    flags: list[str] = field(default_factory=list)
    #: For a line kept with a warning (its best take failed only soft checks): those checks.
    warnings: list[str] = field(default_factory=list)


@dataclass
class Totals(Stats):
    """The engine's counters plus what the whole render took."""

    duration: float = 0.0          # seconds of audio written
    wall_time: float = 0.0
    real_time_factor: float = 0.0  # wall time / audio duration
    up_to_date: bool = False       # the output already held this render: nothing was done


@dataclass
class DialogResult:
    script: str
    path: Path | None
    duration: float
    sample_rate: int
    channels: int
    lines: list[LineRecord]
    voices: dict[str, str]                 # speaker -> voice description
    totals: Totals
    loudness: float | None = None
    true_peak: float | None = None
    notes: list[str] = field(default_factory=list)
    chapters: list[dict[str, Any]] = field(default_factory=list)   # title, start, end (s), line

    @property
    def wall_time(self) -> float:
        return self.totals.wall_time

    def to_json(self) -> dict[str, Any]:
        return {"script": self.script, "output": str(self.path) if self.path else None,
                "duration": self.duration, "sample_rate": self.sample_rate, "channels": self.channels,
                "loudness": self.loudness, "true_peak": self.true_peak, "voices": self.voices,
                "notes": self.notes, "chapters": self.chapters, "totals": asdict(self.totals),
                "lines": [asdict(r) for r in self.lines]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DialogResult:
        return cls(data["script"], Path(data["output"]) if data["output"] else None, data["duration"],
                   data["sample_rate"], data["channels"], [LineRecord(**r) for r in data["lines"]],
                   dict(data["voices"]), Totals(**data["totals"]), data["loudness"], data["true_peak"],
                   list(data["notes"]), list(data.get("chapters", [])))


@dataclass
class BatchResult:
    results: dict[str, DialogResult]
    failures: dict[str, DialogTTSError]


