"""Fair compute in real browsers: one Chromium's sample switch while another runs Occlusion or the checks.

    python benchmarks/bench_browser.py              # 6 rounds, about 10 minutes on 2 busy cores
    python benchmarks/bench_browser.py --rounds 1   # a dry run
    python benchmarks/bench_browser.py --app-root /tmp/old   # serve another checkout (a before/after)

One ``streamlit run dashboard/app.py`` on a loopback port (8561-8570), two Playwright browser
contexts (two sessions) in Debian's ``/usr/bin/chromium``:

- browser A: Source -> Built-in variant -> densenet121 (fresh weights), Attention page; it runs
  Occlusion (about 170 forwards) or, in the second scenario, the trust checks of its Grad-CAM;
- browser B: the bundled demo model on the Attention page; it switches the sidebar's "Sample".

B's switch is timed from the click on the new sample until B's page has finished its run (the
running indicator gone for good) and shows the new image's caption, prediction and Grad-CAM.
It is timed with A idle, during A's Occlusion and during A's checks (B switches 3 s into A's job),
in interleaved rounds; each round opens two fresh sessions (so no switch is served from B's
per-session memos) and rotates the order of the scenarios over B's three images. The figures are
the medians and the ratios to idle (target <= 2x). The server's gate log (every
acquisition with its wait, every chunk with its duration) is summarised per scenario.

Writes benchmarks/RESULTS_browser.md. Everything is bounded: every wait has a timeout, the
server is stopped at the end (and on any failure).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine, versions  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
PORTS = range(8561, 8571)
HOST = "127.0.0.1"
WAIT_S = 300  # any single wait; the first DenseNet-121 run on two shared cores takes a while
#: B's first switches in each new session (the first measured switch was still ~1.5x the later ones after
#: one), then its measured switches (each image once per session, so nothing comes from B's per-session
#: memos); the scenarios rotate over them from round to round.
B_WARMUP = ["demo_opacity_1.png", "demo_none_2.png"]
B_SAMPLES = ["demo_ring_1.png", "demo_none_1.png", "demo_nodule_2.png"]
#: Scenario: A's method, the button that starts its long job, A's image.
SCENARIOS = {"occlusion": ("Occlusion", "run_attr", "skimage_camera.png"),
             "checks": ("Grad-CAM", "run_trust", "skimage_chelsea.png")}
SERVER_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "MALLOC_MMAP_THRESHOLD_": "1000000000",
              "MALLOC_TRIM_THRESHOLD_": "1000000000", "MALLOC_TOP_PAD_": "268435456"}


def _port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def start_server(port: int, log: Path, gate_log: Path, root: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "STREAMLIT_CLIENT_SHOW_ERROR_DETAILS"}
    env.update(SERVER_ENV, DASHBOARD_GATE_LOG=str(gate_log))
    out = open(log, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", HOST, "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"], cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


# --- driving one session -------------------------------------------------------------------------

RUNNING = '[data-testid="stStatusWidget"]'


def running(page) -> bool:
    return page.locator(RUNNING).count() > 0


def settle(page, timeout: float = WAIT_S, quiet: float = 1.0) -> None:
    """Until the page's script run is over: the running indicator absent for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    calm_since = None
    while time.monotonic() < deadline:
        if running(page):
            calm_since = None
        elif calm_since is None:
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since >= quiet:
            return
        page.wait_for_timeout(50)
    raise TimeoutError("the page kept running")


UI_S = 30  # a click on a control; a control not there by then is retried (Escape, click again)


def open_options(page, label: str, *, sidebar: bool = False, timeout: float = UI_S) -> object:
    """Open the selectbox labelled ``label`` (a React-aria combobox of that name); returns its input."""
    scope = page.locator('[data-testid="stSidebar"]') if sidebar else page.locator('[data-testid="stMain"]')
    box = scope.get_by_role("combobox", name=label, exact=True).first
    box.click(timeout=timeout * 1000)
    return box


def pick(page, label: str, option: str, *, sidebar: bool = False, tries: int = 3) -> object:
    """Open ``label``'s options, narrowed to ``option`` by typing it, and return that option (not clicked)."""
    for attempt in range(tries):
        try:
            box = open_options(page, label, sidebar=sidebar)
            box.fill(option, timeout=UI_S * 1000)  # the list is filtered (and short): no virtualised scrolling
            found = page.get_by_role("option", name=option, exact=True).first
            found.wait_for(timeout=UI_S * 1000)
            return found
        except Exception:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")
            page.wait_for_timeout(500)
    raise AssertionError("unreachable")


def choose(page, label: str, option: str, *, sidebar: bool = False) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    pick(page, label, option, sidebar=sidebar).click(timeout=UI_S * 1000)


SHOWS = """(name) => {
  const side = document.querySelector('[data-testid="stSidebar"]');
  const caption = side && [...side.querySelectorAll('[data-testid="stImageCaption"]')]
      .some(e => e.innerText.startsWith(name));
  const metric = [...document.querySelectorAll('[data-testid="stMetric"]')]
      .some(e => e.innerText.includes('Prediction'));
  const map = [...document.querySelectorAll('[data-testid="stImage"]')]
      .filter(e => e.innerText.includes('Grad-CAM · '))
      .some(e => { const img = e.querySelector('img'); return img && img.complete && img.naturalWidth > 0; });
  const stale = document.querySelector('[data-stale="true"]') !== null;
  return Boolean(caption && metric && map && !stale);
}"""


def timed_switch(page, sample: str, *, timeout: float = WAIT_S, confirm: float = 1.5) -> float:
    """Seconds from picking ``sample`` until the page is done and shows its caption, prediction and map.

    The end is the first moment all of that holds with no run in progress, confirmed by it holding
    for ``confirm`` seconds more (a later rerun resets it); the confirmation is not counted.
    """
    option = pick(page, "Sample", sample, sidebar=True)
    start = time.perf_counter()
    option.click()
    deadline = time.monotonic() + timeout
    done_at = None
    while time.monotonic() < deadline:
        ok = not running(page) and page.evaluate(SHOWS, sample)
        now = time.perf_counter()
        if not ok:
            done_at = None
        elif done_at is None:
            done_at = now
        elif now - done_at >= confirm:
            return done_at - start
        page.wait_for_timeout(25)
    raise TimeoutError(f"the switch to {sample} did not finish in {timeout:.0f} s")


def click_key(page, key: str, timeout: float = 120) -> None:
    page.locator(f".st-key-{key} button").first.click(timeout=timeout * 1000)


# --- the rounds --------------------------------------------------------------------------------------

def gate_summary(lines: list[str]) -> dict[str, object]:
    """Waits of interactive acquisitions and chunk durations of long jobs, from the gate log lines."""
    waits, long_waits, chunks = [], [], {}
    for line in lines:
        parts = line.split()
        if "acquire" in parts:
            seconds = float(parts[-1].rstrip("s"))
            (long_waits if "(long)" in line else waits).append(seconds)
        elif "chunk" in parts:
            i = parts.index("chunk")
            label = " ".join(parts[i + 1:-2])
            chunks.setdefault(label, []).append(float(parts[-2].rstrip("s")))
    return {"interactive acquisitions": len(waits), "interactive wait max s": round(max(waits, default=0), 2),
            "interactive wait total s": round(sum(waits), 2), "long acquisitions": len(long_waits),
            "long wait max s": round(max(long_waits, default=0), 2),
            "chunks": {k: {"n": len(v), "median s": round(statistics.median(v), 2), "max s": round(max(v), 2)}
                       for k, v in chunks.items()}}


def step(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", flush=True)


def run(rounds: int, port: int, workdir: Path, root: Path = ROOT) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    gate_log = workdir / "gate.log"
    server_log = workdir / "streamlit.log"
    load_start = os.getloadavg()
    proc = start_server(port, server_log, gate_log, root)
    base = f"http://{HOST}:{port}"
    gate_log.touch()
    times: dict[str, list[float]] = {"idle": [], "occlusion": [], "checks": []}
    a_seconds: dict[str, list[float]] = {"occlusion": [], "checks": []}
    logs: dict[str, list[str]] = {"idle": [], "occlusion": [], "checks": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            a = b = None

            def fresh_sessions() -> None:
                """New contexts (new sessions, empty per-session memos): A on DenseNet-121, B on the demo model."""
                nonlocal a, b
                for page in (a, b):
                    if page is not None:
                        page.context.close()
                a = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                b = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                for page in (a, b):
                    page.goto(f"{base}/attention", timeout=WAIT_S * 1000)
                    page.get_by_text("Prediction").first.wait_for(timeout=WAIT_S * 1000)
                    settle(page)
                choose(a, "Source", "Built-in variant (fresh weights)", sidebar=True)
                settle(a)
                choose(a, "Variant", "densenet121", sidebar=True)
                a.get_by_text("densenet121").first.wait_for(timeout=WAIT_S * 1000)
                settle(a)
                for sample in B_WARMUP:  # B's first switches of a session (figures, caches): not counted
                    timed_switch(b, sample)
                    settle(b, quiet=0.5)

            def b_switch(sample: str) -> float:
                seconds = timed_switch(b, sample)
                settle(b, quiet=0.5)
                return seconds

            def a_prepare(method_label: str, sample: str) -> None:
                """A on ``sample`` with ``method_label`` chosen; nothing running."""
                step(f"A: {method_label} on {sample}")
                choose(a, "Method", method_label)
                settle(a)
                choose(a, "Sample", sample, sidebar=True)
                settle(a)

            def idle(sample: str) -> None:
                mark = len(gate_log.read_text().splitlines())
                times["idle"].append(b_switch(sample))
                logs["idle"] += gate_log.read_text().splitlines()[mark:]
                print(f"  idle: B {times['idle'][-1]:.2f} s", flush=True)

            def during(scenario: str, sample: str) -> None:
                method_label, button, a_sample = SCENARIOS[scenario]
                a_prepare(method_label, a_sample)
                mark = len(gate_log.read_text().splitlines())
                step(f"A: starts {scenario}")
                start = time.perf_counter()
                click_key(a, button)
                a.locator('[data-testid="stProgress"]').first.wait_for(timeout=WAIT_S * 1000)
                b.wait_for_timeout(3000)  # inside A's job, which has held the slot a while (as in the issue)
                if not running(a):
                    raise RuntimeError(f"A's {scenario} was over before B's switch: the figure would be idle")
                times[scenario].append(b_switch(sample))
                a_alive = running(a)
                settle(a, timeout=900)
                a_seconds[scenario].append(time.perf_counter() - start)
                logs[scenario] += gate_log.read_text().splitlines()[mark:]
                print(f"  {scenario}: B {times[scenario][-1]:.2f} s (A still running after it: {a_alive}), "
                      f"A {a_seconds[scenario][-1]:.0f} s", flush=True)

            order = ["idle", "occlusion", "checks"]
            for r in range(rounds):
                step(f"round {r + 1} of {rounds}: fresh sessions")
                fresh_sessions()
                rotated = order[r % 3:] + order[:r % 3]  # each scenario meets each position (and image)
                for scenario, sample in zip(rotated, B_SAMPLES):
                    if scenario == "idle":
                        idle(sample)
                    else:
                        during(scenario, sample)
            browser.close()
    except BaseException:
        for name, page in (("a", locals().get("a")), ("b", locals().get("b"))):
            if page is not None:
                try:
                    page.screenshot(path=str(workdir / f"failed_{name}.png"))
                except Exception:  # the browser may be gone already
                    pass
        raise
    finally:
        stop_server(proc)
    load_end = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"rounds": rounds, "times": times, "median": med,
            "ratio": {k: med[k] / med["idle"] for k in ("occlusion", "checks")},
            "a_seconds": {k: statistics.median(v) for k, v in a_seconds.items()},
            "gate": {k: gate_summary(v) for k, v in logs.items()},
            "load_start": load_start, "load_end": load_end}


def report(res: dict, command: str) -> str:
    med, ratio = res["median"], res["ratio"]
    load = lambda t: " / ".join(f"{v:.1f}" for v in t)  # noqa: E731

    def row(name: str, label: str) -> str:
        r = ratio[name]
        return (f"| {label} (A: {res['a_seconds'][name]:.0f} s) | {med[name]:.2f} s | {r:.2f}x | <= 2x "
                f"({'met' if r <= 2 else '**not met**'}) |")

    return "\n".join([
        "## Two browsers",
        "",
        f"`{command}` — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}. Versions: {versions('torch', 'streamlit', 'playwright', 'captum')}; "
        f"Chromium {chromium_version()}.",
        f"Load average (1/5/15 min) at start {load(res['load_start'])}, at end {load(res['load_end'])} "
        "(other work shared the machine).",
        "",
        "One server, two Chromium sessions. B (bundled demo model, Attention page) switches sample; the time runs "
        "from the click until B's run is over and its page shows the new caption, prediction and Grad-CAM. "
        f"A (DenseNet-121, fresh weights) is idle, runs Occlusion, or runs the trust checks. Median of "
        f"{res['rounds']} interleaved rounds.",
        "",
        "| B's sample switch | median | ratio | target |",
        "|---|---:|---:|---:|",
        f"| A idle | {med['idle']:.2f} s | 1.00 | |",
        row("occlusion", "during A's Occlusion"),
        row("checks", "during A's trust checks"),
        "",
        "Every switch, seconds: " + "; ".join(f"{k} " + ", ".join(f"{t:.2f}" for t in v)
                                              for k, v in res["times"].items()),
        "",
        "The gate's log over each scenario (waits for a slot; duration of the long jobs' chunks):",
        "",
        "```",
        json.dumps(res["gate"], indent=1),
        "```",
        "",
    ])


def chromium_version() -> str:
    try:
        out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout
        found = re.search(r"\d+(\.\d+)+", out)
        return found.group(0) if found else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6,
                        help="interleaved rounds (idle, Occlusion, checks; fresh sessions each)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_browser.md")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the server and gate logs here")
    parser.add_argument("--app-root", type=Path, default=ROOT,
                        help="serve this checkout's dashboard/app.py (a copy of an earlier commit: a before/after)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped (SIGTERM)"))  # so that the server is stopped too
    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM} (Debian package 'chromium')")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            res = run(args.rounds, _port(), Path(tmp), args.app_root.resolve())
        finally:
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for path in Path(tmp).iterdir():
                    (args.keep_logs / path.name).write_bytes(path.read_bytes())
    print(json.dumps({k: res[k] for k in ("median", "ratio", "a_seconds")}), flush=True)
    text = report(res, "python benchmarks/bench_browser.py" + (f" --rounds {args.rounds}" if args.rounds != 6 else ""))
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
