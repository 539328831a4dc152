"""Two dashboard sessions at once, and what one session holds: fairness and memory, measured.

    python benchmarks/bench_session.py            # about 3 minutes on 2 CPU threads
    python benchmarks/bench_session.py --quick    # a dry run

Fairness: two real sessions (Streamlit's AppTest, two threads of one process, as a server runs
them) on DenseNet-121 with fresh weights, both on the Attention page. Session A computes
Occlusion (about 170 forwards, in chunks on the compute gate); session B switches samples and
draws a Grad-CAM. B's switch is timed on an idle server and while A's Occlusion runs
(interleaved, medians); the ratio is the figure (target <= 2x).

Memory: the peak resident memory of one process that loads DenseNet-121 and traces one 224 px
image as a feature-maps page does, before this redesign (every trace kept its autograd graph)
and now (no graph unless an explanation asks for it), each in a fresh subprocess.

Writes the "Sessions" section to benchmarks/RESULTS_session.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine, versions  # noqa: E402

APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 600


def _serial_compile() -> None:
    """CPython 3.11 before 3.11.8 can fail compiling two scripts in two threads at once."""
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    lock = threading.Lock()
    original = ScriptCache.get_bytecode

    def serial(self, script_path):
        with lock:
            return original(self, script_path)

    ScriptCache.get_bytecode = serial


def _widget(at, kind: str, name: str):
    return next(w for w in at.get(kind) if (w.key or "").split(":")[0] == name)


def _session(method: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _widget(at, "selectbox", "model_source").set_value("variant").run()
    _widget(at, "selectbox", "variant").set_value("densenet121").run()
    at.switch_page("views/attention.py").run()
    if method:
        _widget(at, "selectbox", "method").set_value(method).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def fairness(switches: int) -> dict[str, float]:
    _serial_compile()
    from dashboard.inputs import samples

    names = [s.name for s in samples()][:6]
    b = _session()
    a = _session("occlusion")
    idle, busy = [], []
    turn = 0

    def switch() -> float:
        nonlocal turn
        turn += 1
        _widget(b, "selectbox", "sample").set_value(names[turn % len(names)])
        start = time.perf_counter()
        b.run()
        assert not b.exception, [e.message for e in b.exception]
        return time.perf_counter() - start

    for _ in range(2):  # warm-up: first traces, figure caches
        switch()
    occlusion_seconds = []
    for _ in range(switches):
        idle.append(switch())
        done = threading.Event()

        def long_job() -> None:
            start = time.perf_counter()
            a.button(key="run_attr").click().run()
            occlusion_seconds.append(time.perf_counter() - start)
            done.set()

        worker = threading.Thread(target=long_job)
        worker.start()
        time.sleep(2.0)  # well inside the Occlusion run
        busy.append(switch())
        worker.join()
        a.session_state["_cache_maps"].clear()  # next round computes it again...
        a.run()  # ...and shows its Compute button
        assert len(occlusion_seconds) == len(busy), "the long job did not run during the timed switch"
    return {"idle": statistics.median(idle), "busy": statistics.median(busy),
            "occlusion": statistics.median(occlusion_seconds), "switches": switches}


MEMORY_SCRIPT = r"""
import resource, sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(2)
import densenet
from densenet.testing import randomise_batchnorm
model = randomise_batchnorm(densenet.create("densenet121"), seed=0).eval()
x = torch.randn(1, 3, 224, 224)
with torch.no_grad():
    model(x)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
trace = model.trace(x, keep_graph={graph})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base, peak)
"""


def memory(repeats: int) -> dict[str, float]:
    out: dict[str, list[float]] = {"before (graph kept)": [], "now (no graph)": []}
    for _ in range(repeats):
        for label, graph in (("before (graph kept)", True), ("now (no graph)", False)):
            code = MEMORY_SCRIPT.format(root=str(ROOT), graph=graph)
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "2"})
            base, peak = (int(v) for v in res.stdout.split())
            out[label].append((peak - base) / 1024)  # ru_maxrss is in KiB on Linux
    return {k: statistics.median(v) for k, v in out.items()}


def report(fair: dict[str, float], mem: dict[str, float], command: str) -> str:
    ratio = fair["busy"] / fair["idle"]
    before, now = mem["before (graph kept)"], mem["now (no graph)"]
    return "\n".join([
        "## Sessions",
        "",
        f"`{command}` — {datetime.date.today().isoformat()}",
        "",
        f"Machine: {machine()}. Versions: {versions('torch', 'streamlit')}.",
        "",
        "Two AppTest sessions on DenseNet-121 (fresh weights), both on the Attention page: B switches sample "
        f"(trace with graph + Grad-CAM) on an idle server and while A's Occlusion runs (median of {fair['switches']} "
        "each, interleaved).",
        "",
        "| B's sample switch | median | ratio | target |",
        "|---|---:|---:|---:|",
        f"| idle server | {fair['idle']:.2f} s | 1.00 | |",
        f"| during A's Occlusion ({fair['occlusion']:.0f} s) | {fair['busy']:.2f} s | {ratio:.2f}x | <= 2x "
        f"({'met' if ratio <= 2 else '**not met**'}) |",
        "",
        "Peak resident memory added by tracing one 224 px image on DenseNet-121 (the feature-maps page), "
        "fresh subprocess each, median:",
        "",
        "| trace | peak memory added |",
        "|---|---:|",
        f"| before: every trace kept its autograd graph | {before:.0f} MiB |",
        f"| now: no graph unless an explanation asks | {now:.0f} MiB ({now / before:.2f}x) |",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one switch, one memory repeat")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_session.md")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    mem = memory(1 if args.quick else 3)
    print(mem, flush=True)
    fair = fairness(1 if args.quick else 5)
    print(json.dumps(fair), flush=True)
    text = report(fair, mem, "python benchmarks/bench_session.py" + (" --quick" if args.quick else ""))
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
