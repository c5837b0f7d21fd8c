"""classifier/files.py: only regular files are opened, whatever a path turns out to be at the moment of opening;
the image decoder (the predict command, the app, the training scan) opens paths through it."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time

import pytest
from conftest import run_main
from special_files import DEVICE, make_special_files, unblocked

from classifier import files
from classifier.data.images import ImageError, load_rgb
from classifier.files import FileRefused, open_regular, read_regular
from classifier.predict import main as predict_main


def test_each_special_path_is_refused_with_what_it_is(tmp_path):
    reasons = make_special_files(tmp_path)
    with tempfile.TemporaryDirectory(dir="/tmp") as short:  # a socket's path must be short (108 bytes)
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(os.path.join(short, "s.png"))
            reasons[os.path.join(short, "s.png")] = "a socket, not a regular file"
            reasons[tmp_path / "absent.png"] = "no such file or directory"
            with unblocked([tmp_path / "fifo.png"]) as freed:
                for name, reason in reasons.items():
                    with pytest.raises(FileRefused) as refused:
                        open_regular(tmp_path / name)
                    assert refused.value.reason == reason
        finally:
            sock.close()
    assert not freed


def test_a_fifo_swapped_in_after_the_check_is_refused_without_waiting(tmp_path, monkeypatch):
    """The check before opening sees a regular file; what is opened is a FIFO with no writer: opened without
    waiting (O_NONBLOCK) and refused by the descriptor's own fstat."""
    regular = tmp_path / "a.png"
    regular.write_bytes(b"image")
    os.mkfifo(tmp_path / "fifo.png")
    monkeypatch.setattr(files, "_stat", lambda path: os.stat(regular))  # the swap, between check and open
    started = time.monotonic()
    with unblocked([tmp_path / "fifo.png"]) as freed:
        with pytest.raises(FileRefused, match="a FIFO"):
            open_regular(tmp_path / "fifo.png")
    assert not freed and time.monotonic() - started < 5


def test_a_regular_file_reads_whole_up_to_the_limit_and_no_descriptor_is_left(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 3_000_000)
    held = len(os.listdir("/proc/self/fd"))
    assert read_regular(path, 3_000_000) == path.read_bytes()
    with pytest.raises(FileRefused, match="larger than 2 MB"):
        read_regular(path, 2 * 2**20)
    with open_regular(tmp_path / "a.png") as file:
        assert os.get_blocking(file.fileno())  # an ordinary file object once checked
    assert len(os.listdir("/proc/self/fd")) == held


def test_the_predict_command_names_devices_fifos_and_dangling_links_without_reading_or_waiting(
    model_dir, shapes_dir, tmp_path, capsys
):
    """`python -m classifier.predict` (and the app: the same decoder) refuses them, says what each is, and goes on."""
    odd = tmp_path / "odd"
    reasons = make_special_files(odd)
    with pytest.raises(ImageError, match=re.escape(DEVICE)):  # before /dev/zero below: refused, not read at all
        load_rgb(odd / "null.png")
    circle = sorted(shapes_dir.glob("circle/*.png"))[0]
    names = ["fifo.png", "zero.png", "null.png", "dangling.png"]
    with unblocked([odd / "fifo.png"]) as freed:
        code, out, err = run_main(predict_main, [model_dir, *[odd / name for name in names], circle], capsys)
    assert not freed and code == 1 and out.startswith(f"{circle}: ")
    assert err.splitlines() == [f"error: {odd / name}: {reasons[name]}" for name in names]
