"""What hostile long strings cost the app: 12 calls at once, each with a 60 MiB string in a text input.

    python benchmarks/long_strings.py MODEL_DIR [--calls 12] [--mib 60] [--code ../main]

Starts the real app (`python app.py --models-dir` a folder holding a copy of MODEL_DIR, training on as it
is locally) in its own process, then posts `--calls` events to /gradio_api/queue/join at once, as a
page or a script would, each with a `--mib` MiB string in one text input (the Train tab's model name and
class name, the download's and the predict's model, the correction's label, a retrain's model, in turn).
Prints the answers (status, bytes) and the server's resident memory before, at its peak (VmHWM) and
after (at once, and 10 s later). `--code ../main` runs another checkout's app.py for before/after figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from _common import CODE, free_port, machine, uptime_load

TARGETS = [("train", 0), ("download", 0), ("predict", 1), ("correct", 2), ("train", 6), ("retrain", 0)]


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) // 1024 for key in ("VmRSS", "VmHWM")}


def wait_for(url: str, server: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the app exited with {server.returncode}")
        try:
            if httpx.get(url + "config", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("the app did not answer in time")


def outcome(url: str, session: str) -> int:
    """Bytes of the answer of an accepted call, read from its session's event stream."""
    params = {"session_hash": session}
    with httpx.stream("GET", url + "gradio_api/queue/data", params=params, timeout=600) as stream:
        for line in stream.iter_lines():
            if '"process_completed"' in line[:200]:
                return len(line)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--mib", type=float, default=60)
    parser.add_argument("--code", help="another checkout whose app.py to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        models = Path(work) / "models"
        shutil.copytree(args.model_dir, models / args.model_dir.name)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        command = [sys.executable, str(CODE / "app.py"), "--models-dir", str(models), "--port", str(port)]
        server = subprocess.Popen(command, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(url, server)
            dependencies = httpx.get(url + "config").json()["dependencies"]
            inputs = {d["api_name"]: (d["id"], len(d["inputs"])) for d in dependencies if d.get("api_name")}
            huge = "B" * int(args.mib * 2**20)
            bodies, sessions = [], []
            for i in range(args.calls):
                api_name, position = TARGETS[i % len(TARGETS)]
                fn, count = inputs[api_name]
                data = [None] * count
                data[position] = huge
                sessions.append(uuid.uuid4().hex)
                bodies.append(json.dumps({"data": data, "fn_index": fn, "session_hash": sessions[-1]}).encode())
            del huge

            def post(body: bytes) -> httpx.Response:
                headers = {"content-type": "application/json"}
                return httpx.post(url + "gradio_api/queue/join", content=body, headers=headers, timeout=600)

            time.sleep(2)
            before = memory(server.pid)
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(args.calls) as pool:
                responses = list(pool.map(post, bodies))
            seconds = time.monotonic() - started
            del bodies
            # A join the app accepted answers on the event stream: read it (the error, and what it quotes).
            streamed = [
                outcome(url, session) for session, r in zip(sessions, responses, strict=True) if r.status_code == 200
            ]
            at_once = memory(server.pid)
            time.sleep(10)
            later = memory(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"{machine()}; {uptime_load()}; app: {CODE}")
    answers = sorted({(r.status_code, len(r.content)) for r in responses})
    print(
        f"{args.calls} calls of a {args.mib:g} MiB string at once, answered in {seconds:.1f} s: "
        f"(status, bytes) {answers}"
    )
    print(f"first answer: {responses[0].text[:200]!r}")
    if streamed:
        print(f"accepted calls' answers on the event stream, bytes: {sorted(streamed)}")
    print(
        f"server RSS before {before['VmRSS']:,} MiB, peak {at_once['VmHWM']:,} MiB, after {at_once['VmRSS']:,} MiB, "
        f"10 s later {later['VmRSS']:,} MiB (+{later['VmRSS'] - before['VmRSS']:,} MiB)"
    )


if __name__ == "__main__":
    main()
