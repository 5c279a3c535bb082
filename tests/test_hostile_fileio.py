"""Outputs are committed together or not at all; inputs fail cleanly; caches live in the user cache.

Unit tests of :mod:`pimgpt.core.fileio` and :mod:`pimgpt.core.progress` (the commands' own cases
are in test_hostile_cli.py).
"""

import json
import os
import stat

import numpy as np
import pytest

from pimgpt.core import fileio
from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import (
    OutputError,
    Outputs,
    atomic_write_json,
    atomic_write_text,
    cache_dir,
    check_directory,
    json_text,
    read_text,
)


def tree(path):
    """Every file and folder under ``path`` with its content (files) or None (folders)."""
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path)] = None
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = fh.read()
    return out


def test_commit_writes_every_file_with_the_umask_mode(tmp_path):
    outs = Outputs({"--a": tmp_path / "a.txt", "--b": tmp_path / "new" / "b.json", "--c": None})
    assert "--c" not in outs and outs.path("--c") is None
    outs.write_text("--a", "hello\n")
    outs.write_json("--b", {"x": np.float32(1.5), "n": np.int64(3)})
    staged = [k for k, v in tree(tmp_path).items() if v is not None]
    # Staged beside each target, in hidden folders; the targets do not exist yet.
    assert sorted(k.split("/")[-2][:12] for k in staged) == [".pimgpt-out-"] * 2
    assert not (tmp_path / "a.txt").exists() and not (tmp_path / "new" / "b.json").exists()
    written = outs.commit()
    assert written == {"--a": tmp_path / "a.txt", "--b": tmp_path / "new" / "b.json"}
    assert (tmp_path / "a.txt").read_text() == "hello\n"
    assert json.loads((tmp_path / "new" / "b.json").read_text()) == {"x": 1.5, "n": 3}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask
    assert sorted(tree(tmp_path)) == ["a.txt", "new", "new/b.json"]


@pytest.mark.parametrize("make, raw, message", [
    (None, "", "--x is an empty path"),
    ("dir", "d", "--x: {p} is a directory where a file must go"),
    ("file", "f/out.json", "--x: {t}/f is not a folder"),
])
def test_bad_destinations_are_refused_before_anything_runs(tmp_path, make, raw, message):
    if make == "dir":
        (tmp_path / "d").mkdir()
    if make == "file":
        (tmp_path / "f").write_text("x")
    before = tree(tmp_path)
    target = raw if raw == "" else str(tmp_path / raw)
    with pytest.raises(OutputError) as exc:
        Outputs({"--x": target})
    assert str(exc.value).startswith(message.format(p=target, t=tmp_path))
    assert tree(tmp_path) == before


def test_two_options_on_one_file_are_refused(tmp_path):
    with pytest.raises(OutputError, match="--a and --b both name"):
        Outputs({"--a": tmp_path / "x", "--b": str(tmp_path / "." / "x")})


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="is not writable"):
            Outputs({"--x": ro / "sub" / "x.json"})
        with pytest.raises(OutputError, match="is not writable"):
            check_directory("-o", ro)
    finally:
        ro.chmod(0o700)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_folder_that_refuses_files_is_refused_up_front():
    """os.access says yes to root for /proc; a probe file finds out, with no misleading reason
    (creating a file there fails with ENOENT although the folder exists)."""
    for make in (lambda: Outputs({"--stats": "/proc/s.json"}),
                 lambda: check_directory("-o", "/proc/sub/out")):
        with pytest.raises(OutputError, match=r"folder /proc is not writable") as exc:
            make()
        assert "No such file" not in str(exc.value) and "choose another path" in str(exc.value)


def test_probe_names_a_read_only_file_system(tmp_path, monkeypatch):
    import errno

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=r"^--x: folder .* is not writable \(read-only file "
                                          r"system\); choose another path$"):
        Outputs({"--x": tmp_path / "x.json"})


def test_probe_leaves_nothing_behind(tmp_path):
    Outputs({"--x": tmp_path / "x.json"})
    check_directory("-o", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_error_before_commit_leaves_nothing(tmp_path):
    (tmp_path / "old.json").write_text("old")
    before = tree(tmp_path)
    with pytest.raises(RuntimeError), Outputs({"--a": tmp_path / "old.json",
                                               "--b": tmp_path / "sub" / "deeper" / "b"}) as outs:
        outs.write_text("--a", "new")
        outs.write_text("--b", "new")
        raise RuntimeError("the run failed after writing")
    assert tree(tmp_path) == before  # created folders removed again, the old file untouched


def test_a_failing_rename_restores_every_target(tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(f"old {name}")
    before = tree(tmp_path)
    outs = Outputs({n: tmp_path / n for n in ("a", "b", "c")})
    for name in ("a", "b", "c"):
        outs.write_text(name, f"new {name}")
    real = os.replace
    moved = []

    def flaky(src, dst):
        if str(dst) == str(tmp_path / "c") and not str(src).endswith(".old"):
            raise OSError(28, "No space left on device")  # the new c cannot be moved in
        moved.append(dst)
        return real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", flaky)
    with pytest.raises(OutputError, match=r"\(No space left on device\); nothing was written"):
        outs.commit()
    assert moved  # a and b had been replaced before c failed ...
    monkeypatch.setattr(fileio.os, "replace", real)
    assert tree(tmp_path) == before  # ... and were put back


def test_a_destination_turned_into_a_folder_during_the_run(tmp_path):
    outs = Outputs({"--a": tmp_path / "a", "--b": tmp_path / "b"})
    outs.write_text("--a", "1")
    outs.write_text("--b", "2")
    (tmp_path / "b").mkdir()
    with pytest.raises(OutputError, match="--b: .* is a directory"):
        outs.commit()
    assert tree(tmp_path) == {"b": None}


def test_non_finite_json_is_refused_with_its_key(tmp_path):
    with pytest.raises(OutputError, match=r"stats: whole\.energy\[1\] is not a finite number"):
        json_text({"whole": {"energy": [1.0, float("nan")]}}, "stats")
    with pytest.raises(OutputError, match=r"x: a is not a finite"):
        json_text({"a": np.float64("inf")}, "x")
    with pytest.raises(OutputError):
        atomic_write_json(tmp_path / "s.json", {"a": float("-inf")})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_text(tmp_path):
    p = atomic_write_text(tmp_path / "x" / "t.txt", "é\n")
    assert p.read_bytes() == "é\n".encode()
    with pytest.raises(OutputError, match="empty path"):
        atomic_write_text("", "x")


def test_read_text_errors_are_one_line(tmp_path):
    class MyError(PimgptError):
        pass

    (tmp_path / "bad.yaml").write_bytes(b"a: 1\n# caf\xe9\n")
    with pytest.raises(MyError, match=r"bad.yaml: the hw file is not UTF-8 text \(byte 0xe9 at "
                                      r"offset 10\); save it as UTF-8"):
        read_text(tmp_path / "bad.yaml", "hw file", MyError)
    with pytest.raises(MyError, match="none.yaml: no such file; look"):
        read_text(tmp_path / "none.yaml", "hw file", MyError, missing="look")
    with pytest.raises(MyError, match="is a directory, not a hw file"):
        read_text(tmp_path, "hw file", MyError)
    with pytest.raises(MyError, match="empty path"):
        read_text("", "hw file", MyError)
    (tmp_path / "ok.yaml").write_bytes("x: é\n".encode())
    assert read_text(tmp_path / "ok.yaml") == "x: é\n"


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("PIMGPT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("cocotb") == tmp_path / "xdg" / "pimgpt" / "cocotb"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "pimgpt"
    monkeypatch.setenv("PIMGPT_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir("a", "b") == tmp_path / "mine" / "a" / "b"
    monkeypatch.setenv("PIMGPT_CACHE_DIR", "rel")
    with pytest.raises(PimgptError, match="PIMGPT_CACHE_DIR='rel' is not an absolute path"):
        cache_dir()


def test_rtl_builds_go_to_the_user_cache_not_the_package(tmp_path, monkeypatch):
    import pimgpt
    from pimgpt.sim.cocotb_lib.runner import build_lock, default_build_root

    monkeypatch.setenv("PIMGPT_CACHE_DIR", str(tmp_path / "c"))
    root = default_build_root()
    assert root == tmp_path / "c" / "cocotb"
    monkeypatch.delenv("PIMGPT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_build_root() == tmp_path / "x" / "pimgpt" / "cocotb"
    package = os.path.dirname(os.path.dirname(os.path.abspath(pimgpt.__file__)))
    assert not str(default_build_root()).startswith(package)
    with build_lock(tmp_path / "b" / "system") as d:
        assert (d / ".lock").exists()


def test_progress_bars_only_on_a_terminal(monkeypatch, capsys):
    from pimgpt.core.progress import progress, progress_enabled

    monkeypatch.delenv("PIMGPT_PROGRESS", raising=False)
    assert not progress_enabled()  # pytest's captured stderr is not a terminal
    with progress(3, "quiet") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("PIMGPT_PROGRESS", "1")
    with pytest.raises(ValueError), progress(3, "loud") as bar:
        bar.update(1)
        raise ValueError("boom")
    err = capsys.readouterr().err
    assert "loud" in err and err.endswith("\r")  # the bar's line was cleared for the message
