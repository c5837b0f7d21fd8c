"""Built-in datasets, end to end and offline: test-made zips and CSVs served over real HTTP on 127.0.0.1.

No mocks: the registry is a JSON file pointed at by CLASSIFIER_DATASETS_REGISTRY, the data home is
a tmp folder (CLASSIFIER_DATA_HOME), and downloads go through the same code path as the real ones.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier import datasets
from classifier.console import silent
from classifier.data.datasets import count_images
from classifier.data.pixels_csv import convert_pixels_csv
from classifier.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
LETTERS = [None if c == "J" else c for c in "ABCDEFGHIJKLMNOPQRSTUVWXY"]


# -- test data --------------------------------------------------------------------------------------


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, 255 - shade, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def pets_zip(path: Path, cats: int = 3) -> Path:
    """Laid out like cats_and_dogs_filtered.zip: one top folder, train/validation inside, a stray file."""
    entries = {f"pets_filtered/train/cats/cat.{i}.png": png(i) for i in range(cats)}
    entries |= {f"pets_filtered/train/dogs/dog.{i}.png": png(100 + i) for i in range(2)}
    entries |= {
        "pets_filtered/validation/cats/cat.9.png": png(9),
        "pets_filtered/validation/dogs/dog.9.png": png(99),
        "pets_filtered/vectorize.py": b"print('not an image')\n",
    }
    return make_zip(path, entries)


def pixels_csv(path: Path, labels: list[int], shape=(28, 28)) -> Path:
    """The real Sign Language MNIST column layout; row i's pixels are a pattern unique to i."""
    n = shape[0] * shape[1]
    lines = [",".join(["label"] + [f"pixel{k}" for k in range(1, n + 1)])]
    lines += [",".join(map(str, [label, *row_pixels(i, n)])) for i, label in enumerate(labels)]
    path.write_text("\n".join(lines) + "\n")
    return path


def row_pixels(i: int, n: int = 784) -> np.ndarray:
    return (np.arange(n) * (i + 3) + 7 * i) % 256


def zip_entry(url: str, layout: dict, counts: dict, *, file: str | None = None, **extra) -> dict:
    spec = {"file": file or url.rsplit("/", 1)[-1], "url": url, "layout": layout, **extra}
    return {"kind": "zip", "folder": "pets_filtered", "files": [spec], "counts": counts}


PETS_LAYOUT = {"pets_filtered/train": "train", "pets_filtered/validation": "validation"}
PETS_COUNTS = {"train": {"cats": 3, "dogs": 2}, "validation": {"cats": 1, "dogs": 1}}


def letters_entry(url_base: str | None, train: int, validation: int) -> dict:
    def url(name):
        return f"{url_base}/{name}" if url_base else None

    return {
        "kind": "pixels_csv",
        "folder": "letters",
        "image_shape": [28, 28],
        "classes": LETTERS,
        "csv_dir_env": "CLASSIFIER_ASL_CSV_DIR",
        "source": "https://example.invalid/login",
        "files": [
            {"file": "sign_mnist_train.csv", "split": "train", "url": url("sign_mnist_train.csv")},
            {
                "file": "sign_mnist_valid.csv",
                "aliases": ["sign_mnist_test.csv"],
                "split": "validation",
                "url": url("sign_mnist_valid.csv"),
            },
        ],
        "counts": {"train": train, "validation": validation},
    }


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if not p.is_dir()] if folder.exists() else []


def dead_url(name: str) -> str:
    """A URL on a local port nobody listens on: connection refused, like having no network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


# -- fixtures ---------------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; a name in server.cut gets its full Content-Length but only the first N bytes."""

    def do_GET(self):
        name = self.path.lstrip("/")
        self.server.requests.append(name)
        if name not in self.server.cut:
            return super().do_GET()
        body = (Path(self.directory) / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: self.server.cut[name]])
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def ds_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    server.root, server.cut, server.requests = root, {}, []
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def ds_env(tmp_path, monkeypatch):
    """A private data home and registry; `write(name=entry, ...)` sets the registry's datasets."""
    home = tmp_path / "home"
    registry = tmp_path / "registry.json"
    monkeypatch.setenv("CLASSIFIER_DATA_HOME", str(home))
    monkeypatch.setenv("CLASSIFIER_DATASETS_REGISTRY", str(registry))
    monkeypatch.delenv("CLASSIFIER_DATASETS_MIRROR", raising=False)
    monkeypatch.delenv("CLASSIFIER_ASL_CSV_DIR", raising=False)

    def write(**entries):
        registry.write_text(json.dumps({"version": 1, "datasets": entries}))

    write.home = home
    return write


# -- zip datasets -----------------------------------------------------------------------------------


def test_happy_path_uses_the_declared_layout_and_marks_the_folder_prepared(ds_env, ds_server):
    pets_zip(ds_server.root / "pets.zip")
    ds_env(pets=zip_entry(f"{ds_server.base}/pets.zip", PETS_LAYOUT, PETS_COUNTS))

    folder = datasets.resolve_data("pets", log=silent)

    assert folder == ds_env.home / "pets_filtered"
    assert count_images(folder) == PETS_COUNTS
    assert not (folder / "vectorize.py").exists()  # outside the layout: not copied
    with Image.open(folder / "train" / "dogs" / "dog.1.png") as image:
        assert image.getpixel((0, 0)) == (101, 154, 0)
    marker = json.loads((folder / ".prepared.json").read_text())
    assert marker["counts"] == PETS_COUNTS
    assert marker["sources"][0]["sha256"] == hashlib.sha256((ds_server.root / "pets.zip").read_bytes()).hexdigest()
    assert not [p for p in ds_env.home.iterdir() if p.name.endswith(".tmp")]


def test_two_archives_are_assembled_into_train_and_validation(ds_env, ds_server):
    make_zip(
        ds_server.root / "horse-or-human.zip",
        {"horses/h1.png": png(1), "horses/h2.png": png(2), "humans/p1.png": png(3)},
    )
    make_zip(ds_server.root / "validation-horse-or-human.zip", {"horses/h9.png": png(4), "humans/p9.png": png(5)})
    files = [
        {
            "file": f"{prefix}horse-or-human.zip",
            "url": f"{ds_server.base}/{prefix}horse-or-human.zip",
            "layout": {"horses": f"{split}/horses", "humans": f"{split}/humans"},
        }
        for prefix, split in (("", "train"), ("validation-", "validation"))
    ]
    counts = {"train": {"horses": 2, "humans": 1}, "validation": {"horses": 1, "humans": 1}}
    ds_env(horses={"kind": "zip", "folder": "horse-or-human", "files": files, "counts": counts})

    folder = datasets.resolve_data("horses", log=silent)

    assert count_images(folder) == counts


def test_second_run_needs_no_network(ds_env, ds_server):
    pets_zip(ds_server.root / "pets.zip")
    ds_env(pets=zip_entry(f"{ds_server.base}/pets.zip", PETS_LAYOUT, PETS_COUNTS))
    folder = datasets.resolve_data("pets", log=silent)
    ds_server.shutdown()
    ds_server.server_close()

    assert datasets.resolve_data("pets", log=silent) == folder  # prepared copy
    for path in sorted(folder.rglob("*"), reverse=True):  # remove the folder, keep the download cache
        path.rmdir() if path.is_dir() else path.unlink()
    folder.rmdir()
    assert count_images(datasets.resolve_data("pets", log=silent)) == PETS_COUNTS
    assert ds_server.requests == ["pets.zip"]


def test_mirror_replaces_the_registry_location(ds_env, ds_server, monkeypatch):
    pets_zip(ds_server.root / "pets.zip")
    ds_env(pets=zip_entry(dead_url("some/dir/pets.zip"), PETS_LAYOUT, PETS_COUNTS))
    monkeypatch.setenv("CLASSIFIER_DATASETS_MIRROR", ds_server.base + "/")

    assert count_images(datasets.resolve_data("pets", log=silent)) == PETS_COUNTS
    assert ds_server.requests == ["pets.zip"]


def test_checksum_mismatch_is_one_clear_error_and_leaves_nothing(ds_env, ds_server):
    pets_zip(ds_server.root / "pets.zip")
    ds_env(pets=zip_entry(f"{ds_server.base}/pets.zip", PETS_LAYOUT, PETS_COUNTS, sha256="0" * 64))

    with pytest.raises(UsageError, match="checksum mismatch for pets.zip") as error:
        datasets.resolve_data("pets", log=silent)

    assert "\n" not in str(error.value)
    assert files_under(ds_env.home) == []


def test_matching_checksum_is_accepted(ds_env, ds_server):
    digest = hashlib.sha256(pets_zip(ds_server.root / "pets.zip").read_bytes()).hexdigest()
    ds_env(pets=zip_entry(f"{ds_server.base}/pets.zip", PETS_LAYOUT, PETS_COUNTS, sha256=digest))

    assert (datasets.resolve_data("pets", log=silent) / ".prepared.json").is_file()


@pytest.mark.parametrize(
    "how, message",
    [
        ("connection cut", "transfer stopped after"),  # server promised more bytes than it sent
        ("short file, size known", "bytes, expected"),  # registry size catches it
        ("short file, size unknown", "not a readable zip"),  # only the archive itself can tell
    ],
)
def test_truncated_download_leaves_nothing(ds_env, ds_server, how, message):
    full = pets_zip(ds_server.root / "full.zip").read_bytes()
    (ds_server.root / "pets.zip").write_bytes(full if how == "connection cut" else full[: len(full) // 2])
    if how == "connection cut":
        ds_server.cut["pets.zip"] = len(full) // 2
    size = {"size": len(full)} if how == "short file, size known" else {}
    ds_env(pets=zip_entry(f"{ds_server.base}/pets.zip", PETS_LAYOUT, PETS_COUNTS, **size))

    with pytest.raises(UsageError, match=message):
        datasets.resolve_data("pets", log=silent)

    assert files_under(ds_env.home) == []
    (ds_server.root / "pets.zip").write_bytes(full)  # the next run starts afresh and succeeds
    ds_server.cut.clear()
    assert count_images(datasets.resolve_data("pets", log=silent)) == PETS_COUNTS


def _symlink_zip(path: Path) -> Path:
    pets_zip(path)
    link = zipfile.ZipInfo("pets_filtered/train/cats/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "unsafe", ["../evil.png", "pets_filtered/train/cats/../../../../evil.png", "/tmp/evil.png", "symlink"]
)
def test_archive_entries_outside_the_target_are_refused(ds_env, ds_server, tmp_path, unsafe):
    if unsafe == "symlink":
        _symlink_zip(ds_server.root / "pets.zip")
    else:
        make_zip(ds_server.root / "pets.zip", {"pets_filtered/train/cats/ok.png": png(1), unsafe: png(2)})
    ds_env(pets=zip_entry(f"{ds_server.base}/pets.zip", PETS_LAYOUT, PETS_COUNTS))

    with pytest.raises(UsageError, match="pets.zip refused: entry .* (outside the target|symbolic link)"):
        datasets.resolve_data("pets", log=silent)

    assert files_under(ds_env.home) == []
    assert not list(tmp_path.rglob("evil.png")) and not list(tmp_path.rglob("link.png"))


def test_wrong_counts_are_refused_and_the_download_forgotten(ds_env, ds_server):
    pets_zip(ds_server.root / "pets.zip", cats=2)
    ds_env(pets=zip_entry(f"{ds_server.base}/pets.zip", PETS_LAYOUT, PETS_COUNTS))

    with pytest.raises(UsageError, match=r"expected 3 images in train/cats/, found 2"):
        datasets.resolve_data("pets", log=silent)

    assert files_under(ds_env.home) == []


def test_no_network_says_so_and_how_to_prepare_by_hand(ds_env):
    ds_env(pets=zip_entry(dead_url("pets.zip"), PETS_LAYOUT, PETS_COUNTS))

    with pytest.raises(UsageError, match=r"could not download pets from .*: no network\?.*--from-file FILE"):
        datasets.resolve_data("pets", log=silent)

    assert files_under(ds_env.home) == []


def test_prepare_from_a_file_downloaded_by_hand(ds_env, tmp_path, capsys):
    archive = pets_zip(tmp_path / "pets.zip")
    ds_env(pets=zip_entry(dead_url("pets.zip"), PETS_LAYOUT, PETS_COUNTS))

    assert datasets.main(["prepare", "pets", "--from-file", str(archive)]) == 0

    assert capsys.readouterr().out.strip() == str(ds_env.home / "pets_filtered")
    assert archive.exists()  # the user's file is used in place, never moved or deleted


def test_from_file_with_a_name_the_dataset_does_not_use_is_refused(ds_env, tmp_path, capsys):
    archive = pets_zip(tmp_path / "pets (1).zip")
    ds_env(pets=zip_entry(dead_url("pets.zip"), PETS_LAYOUT, PETS_COUNTS))

    assert datasets.main(["prepare", "pets", "--from-file", str(archive)]) == 2
    assert capsys.readouterr().err == f"error: --from-file {archive}: not a file of pets (expected pets.zip)\n"


def test_a_folder_not_made_here_is_never_overwritten(ds_env, ds_server):
    pets_zip(ds_server.root / "pets.zip")
    ds_env(pets=zip_entry(f"{ds_server.base}/pets.zip", PETS_LAYOUT, PETS_COUNTS))
    (ds_env.home / "pets_filtered" / "train").mkdir(parents=True)

    with pytest.raises(UsageError, match="exists but is not a prepared copy of pets"):
        datasets.resolve_data("pets", log=silent)
    assert ds_server.requests == []


# -- resolve_data -----------------------------------------------------------------------------------


def test_an_existing_folder_is_returned_unchanged(ds_env, tmp_path):
    ds_env()
    assert datasets.resolve_data(str(tmp_path)) == Path(str(tmp_path))


def test_an_unknown_name_lists_the_built_in_ones(ds_env):
    ds_env(pets=zip_entry(dead_url("pets.zip"), PETS_LAYOUT, PETS_COUNTS), asl=letters_entry(None, 1, 1))
    with pytest.raises(UsageError) as error:
        datasets.resolve_data("foo")
    assert str(error.value) == "--data foo: no such folder, and not a built-in dataset (built-in: asl, pets)"


def test_the_shipped_registry_defines_the_course_datasets(monkeypatch):
    monkeypatch.delenv("CLASSIFIER_DATASETS_REGISTRY", raising=False)
    registry = datasets.load_registry()

    assert datasets.known_names() == ["asl", "cats_dogs", "horses_humans"]
    totals = {
        name: {split: n if isinstance(n, int) else sum(n.values()) for split, n in d.counts.items()}
        for name, d in registry.items()
    }
    assert totals == {
        "asl": {"train": 27455, "validation": 7172},
        "cats_dogs": {"train": 2000, "validation": 1000},
        "horses_humans": {"train": 1027, "validation": 256},
    }
    assert [f.url for f in registry["cats_dogs"].files] == [
        "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
    ]
    assert [f.url for f in registry["horses_humans"].files] == [
        "https://storage.googleapis.com/learning-datasets/horse-or-human.zip",
        "https://storage.googleapis.com/learning-datasets/validation-horse-or-human.zip",
    ]
    asl = registry["asl"]
    assert [c for c in asl.classes if c] == list("ABCDEFGHIKLMNOPQRSTUVWXY") and asl.classes[9] is None
    assert registry["cats_dogs"].folder == "cats_and_dogs_filtered"


# -- pixels CSV -------------------------------------------------------------------------------------


def test_convert_pixels_csv_keeps_every_pixel_and_names_folders_by_letter(tmp_path):
    labels = [0, 1, 1, 24, 10, 0, 24, 24]  # A, B, B, Y, K, A, Y, Y
    csv = pixels_csv(tmp_path / "sign_mnist_train.csv", labels)

    counts = convert_pixels_csv(csv, tmp_path / "out", class_names=LETTERS)

    assert counts == {"A": 2, "B": 2, "K": 1, "Y": 3}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["A", "B", "K", "Y"]
    for row, label in enumerate(labels):
        with Image.open(tmp_path / "out" / LETTERS[label] / f"{row}.png") as image:
            assert image.size == (28, 28) and image.mode == "L"
            np.testing.assert_array_equal(np.asarray(image), row_pixels(row).reshape(28, 28))


def test_any_pixels_csv_shape_works_without_class_names(tmp_path):
    csv = pixels_csv(tmp_path / "digits.csv", [3, 0, 3], shape=(4, 6))

    counts = convert_pixels_csv(csv, tmp_path / "out", image_shape=(4, 6))

    assert counts == {"0": 1, "3": 2}
    with Image.open(tmp_path / "out" / "3" / "2.png") as image:
        np.testing.assert_array_equal(np.asarray(image), row_pixels(2, 24).reshape(4, 6))


def _bad_csv(path: Path, problem: str) -> Path:
    pixels_csv(path, [0, 1, 2])
    lines = path.read_text().splitlines()
    if problem == "missing column":
        lines = [line.rsplit(",", 1)[0] for line in lines]
    elif problem == "no label column":
        lines[0] = lines[0].replace("label", "letter")
    elif problem in ("label 25", "label 9 (J)", "label -1"):
        lines[2] = problem.split()[1] + lines[2][1:]
    elif problem == "pixel 256":
        lines[3] = lines[3] + "6"  # last pixel 9x -> 9x6
    elif problem == "not a number":
        lines[1] = lines[1].replace(",", ",x", 1)
    elif problem == "ragged row":
        lines[2] = lines[2].rsplit(",", 1)[0]
    elif problem == "header only":
        lines = lines[:1]
    path.write_text("\n".join(lines) + "\n")
    return path


BAD_CSV = {
    "missing column": "missing: pixel784",
    "no label column": "missing: label",
    "label 25": "label 25 in data row 2 is out of range .valid: 0-8, 10-24",
    "label 9 (J)": "label 9 in data row 2 is out of range",
    "label -1": "label -1 in data row 2",
    "pixel 256": "pixel values must be 0-255",
    "not a number": "not a pixels CSV",
    "ragged row": "not a pixels CSV",
    "header only": "found 0 rows",
}


@pytest.mark.parametrize("problem", BAD_CSV)
def test_a_bad_csv_is_one_clear_error_and_writes_nothing(tmp_path, problem):
    csv = _bad_csv(tmp_path / "bad.csv", problem)
    if problem == "pixel 256":
        assert csv.read_text().splitlines()[3].rsplit(",", 1)[1] == f"{row_pixels(2)[-1]}6"

    with pytest.raises(UsageError, match=BAD_CSV[problem]) as error:
        convert_pixels_csv(csv, tmp_path / "out", class_names=LETTERS)

    assert str(csv) in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def _asl_csvs(folder: Path, validation_name: str = "sign_mnist_valid.csv") -> Path:
    folder.mkdir(exist_ok=True)
    pixels_csv(folder / "sign_mnist_train.csv", [0, 1, 2, 24, 24])
    pixels_csv(folder / validation_name, [0, 24])
    return folder


def test_asl_from_a_csv_dir_with_the_public_file_names(ds_env, tmp_path):
    ds_env(asl=letters_entry(None, 5, 2))
    csv_dir = _asl_csvs(tmp_path / "kaggle", validation_name="sign_mnist_test.csv")

    folder = datasets.resolve_data("asl", csv_dir=str(csv_dir), log=silent)

    assert count_images(folder) == {"train": {"A": 1, "B": 1, "C": 1, "Y": 2}, "validation": {"A": 1, "Y": 1}}
    assert datasets.resolve_data("asl", log=silent) == folder  # converted once, cached


def test_asl_from_the_environment_variable(ds_env, tmp_path, monkeypatch):
    ds_env(asl=letters_entry(None, 5, 2))
    monkeypatch.setenv("CLASSIFIER_ASL_CSV_DIR", str(_asl_csvs(tmp_path / "course")))

    assert sum(count_images(datasets.resolve_data("asl", log=silent))["train"].values()) == 5


def test_asl_from_a_configured_url(ds_env, ds_server):
    _asl_csvs(ds_server.root)
    ds_env(asl=letters_entry(ds_server.base, 5, 2))

    folder = datasets.resolve_data("asl", log=silent)

    assert count_images(folder)["validation"] == {"A": 1, "Y": 1}
    assert sorted(ds_server.requests) == ["sign_mnist_train.csv", "sign_mnist_valid.csv"]


def test_asl_without_csvs_says_where_to_get_them(ds_env):
    ds_env(asl=letters_entry(None, 5, 2))
    with pytest.raises(
        UsageError, match="login at https://example.invalid/login.*--csv-dir DIR or set CLASSIFIER_ASL_CSV_DIR"
    ):
        datasets.resolve_data("asl")


def test_asl_with_a_bad_csv_exits_2_and_leaves_nothing(ds_env, tmp_path, capsys):
    ds_env(asl=letters_entry(None, 5, 2))
    csv_dir = _asl_csvs(tmp_path / "kaggle")
    _bad_csv(csv_dir / "sign_mnist_valid.csv", "label 25")

    assert datasets.main(["prepare", "asl", "--csv-dir", str(csv_dir)]) == 2

    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("error: asl: ") and "label 25 in data row 2" in error
    assert files_under(ds_env.home) == []


# -- command line -----------------------------------------------------------------------------------


def test_cli_list_info_prepare(ds_env, ds_server, capsys):
    archive = pets_zip(ds_server.root / "pets.zip")
    ds_env(pets=zip_entry(f"{ds_server.base}/pets.zip", PETS_LAYOUT, PETS_COUNTS), asl=letters_entry(None, 5, 2))
    where = ds_env.home / "pets_filtered"

    assert datasets.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines] == [["asl", "not", "prepared"], ["pets", "not", "prepared"]]
    assert lines[1].endswith(str(where)) and "train 5, validation 2" in lines[1]

    assert datasets.main(["prepare", "pets"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{where}\n" and "downloading" in err and "ready in" in err

    assert datasets.main(["list"]) == 0
    assert "pets           prepared      train 5, validation 2" in capsys.readouterr().out

    assert datasets.main(["info", "pets"]) == 0
    info = capsys.readouterr().out
    assert f"{ds_server.base}/pets.zip" in info and "status:     prepared" in info
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in info


def test_cli_unknown_name_exits_2_with_one_line(ds_env, capsys):
    ds_env(pets=zip_entry(dead_url("pets.zip"), PETS_LAYOUT, PETS_COUNTS))
    for command in (["info", "nope"], ["prepare", "nope"]):
        assert datasets.main(command) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == "error: unknown dataset 'nope' (known: pets)\n"


def test_cli_no_network_exits_2_with_one_line(ds_env, capsys):
    ds_env(pets=zip_entry(dead_url("pets.zip"), PETS_LAYOUT, PETS_COUNTS))
    assert datasets.main(["prepare", "pets"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and err.splitlines()[1].startswith("error: could not download pets")


def test_module_entry_point(ds_env, ds_server):
    pets_zip(ds_server.root / "pets.zip")
    ds_env(pets=zip_entry(f"{ds_server.base}/pets.zip", PETS_LAYOUT, PETS_COUNTS))
    env = dict(os.environ, PYTHONPATH=str(REPO))

    result = subprocess.run(
        [sys.executable, "-m", "classifier.datasets", "list"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == ["pets", "not", "prepared"]
