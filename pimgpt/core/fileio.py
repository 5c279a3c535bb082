"""Files in and out: whole outputs or none, clean errors for unreadable inputs, the user cache.

Outputs. Every command writes its results through :class:`Outputs`: the destinations are checked
before the command starts its work (an empty path, a directory where a file should go, an unwritable
folder, found by creating and removing a file in it, or two options naming the same file are refused
at once), the files are written into a temporary folder beside their targets, and
:meth:`Outputs.commit` moves them all into place at the end. If anything fails, before or during the
commit, no target is changed: files that a commit had already replaced are put back. Every file gets
the mode an ordinary ``open()`` would give it (``mkstemp`` alone gives 0600). :func:`atomic_write`
is the one-file form.

Inputs. :func:`read_text` reads a UTF-8 text file and turns every failure (missing, a directory,
unreadable, not UTF-8) into a one-line :class:`~pimgpt.core.errors.PimgptError`.

Caches. :func:`cache_dir` is the user cache folder of pimgpt (``$PIMGPT_CACHE_DIR``, else
``$XDG_CACHE_HOME/pimgpt``, else ``~/.cache/pimgpt``); builds and caches never go into the package.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from pimgpt.core.errors import PimgptError

#: Environment variable that overrides the cache folder.
CACHE_ENV = "PIMGPT_CACHE_DIR"


class OutputError(PimgptError):
    """An output destination cannot be written; the message names the option and the fix."""


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def read_bytes(path: str | Path, what: str = "file", error: type[PimgptError] = PimgptError,
               missing: str = "check the path") -> bytes:
    """The bytes of a file; every failure is one line of ``error``.

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is, for the message (``"hardware YAML"``).
    error : type
        The :class:`PimgptError` subclass to raise.
    missing : str
        The fix to suggest when the file does not exist.
    """
    if str(path) == "":
        raise error(f"empty path given for the {what}; name a file")
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file; {missing}") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory, not a {what}; name the file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def read_text(path: str | Path, what: str = "file", error: type[PimgptError] = PimgptError,
              missing: str = "check the path") -> str:
    """The text of a UTF-8 file; every failure is one line of ``error`` (see :func:`read_bytes`)."""
    data = read_bytes(path, what, error, missing)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        raise error(f"{Path(path)}: the {what} is not UTF-8 text (byte {bad:#04x} at offset "
                    f"{exc.start}); save it as UTF-8") from None


# ---------------------------------------------------------------------------------------------
# Caches
# ---------------------------------------------------------------------------------------------
def cache_dir(*parts: str) -> Path:
    """The user cache folder of pimgpt (or a sub-folder), not created.

    ``$PIMGPT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/pimgpt``, else ``~/.cache/pimgpt``.

    Raises
    ------
    PimgptError
        If ``$PIMGPT_CACHE_DIR`` is set to an empty or relative path.
    """
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        if not env or not Path(env).is_absolute():
            raise PimgptError(f"{CACHE_ENV}={env!r} is not an absolute path; set it to a "
                              "folder such as $HOME/.cache/pimgpt or unset it")
        base = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        # XDG: a relative value is invalid and must be ignored.
        base = (Path(xdg) if xdg and Path(xdg).is_absolute()
                else Path.home() / ".cache") / "pimgpt"
    return base.joinpath(*parts)


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------
def _first_non_finite(data, where: str = "") -> str | None:
    """Dotted key of the first NaN/Infinity in a JSON-like value, or None."""
    if isinstance(data, float):
        return None if math.isfinite(data) else (where or "(top level)")
    if isinstance(data, Mapping):
        items: Iterable = ((f"{where}.{k}" if where else str(k), v) for k, v in data.items())
    elif isinstance(data, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(data))
    else:
        try:
            value = float(data)  # numpy scalars
        except (TypeError, ValueError):
            return None
        return None if math.isfinite(value) else (where or "(top level)")
    for key, value in items:
        found = _first_non_finite(value, key)
        if found:
            return found
    return None


def _json_default(obj):
    """numpy scalars and arrays as JSON values (``json`` knows only Python's own types)."""
    if hasattr(obj, "tolist"):  # numpy scalar or array: int, float, bool or nested lists
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def json_text(data, what: str = "output", **dump_kwargs) -> str:
    """Standard JSON text of ``data`` (numpy values as numbers; NaN/Infinity refused).

    Raises
    ------
    OutputError
        Naming the first key whose value is not a finite number.
    """
    dump_kwargs.setdefault("default", _json_default)
    try:
        return json.dumps(data, allow_nan=False, **dump_kwargs) + "\n"
    except ValueError:
        key = _first_non_finite(data)
        raise OutputError(f"{what}: {key} is not a finite number, which standard JSON cannot "
                          "hold; check the hardware and model values that produce it") from None


class Outputs:
    """The output files of one command, written together or not at all.

    Parameters
    ----------
    targets : mapping of str to path or None
        Option name (as the user wrote it, e.g. ``"--stats"``) to destination file. ``None``
        means the option was not given and is skipped. Destinations are checked here, before the
        command does its work.
    label : str, optional
        Names the option in messages instead of the keys (``"-o out"`` for the files of one
        output folder).

    Examples
    --------
    >>> outs = Outputs({"--stats": args.stats, "--logits": args.logits})  # doctest: +SKIP
    >>> ...  # the long run
    >>> outs.write_json("--stats", stats)  # doctest: +SKIP
    >>> outs.commit()  # doctest: +SKIP
    """

    def __init__(self, targets: Mapping[str, str | Path | None], label: str | None = None):
        self.targets: dict[str, Path] = {}
        self.label = label
        seen: dict[Path, str] = {}
        for opt, raw in targets.items():
            if raw is None:
                continue
            path = check_destination(self._name(opt), raw)
            key = path.resolve()
            if key in seen:
                raise OutputError(f"{seen[key]} and {opt} both name {raw}; give each output its "
                                  "own file")
            seen[key] = opt
            self.targets[opt] = path
        self._staged: dict[str, Path] = {}
        self._stage_dirs: dict[Path, Path] = {}
        self._made_dirs: list[Path] = []

    def _name(self, opt: str) -> str:
        return self.label or opt

    def __contains__(self, opt: str) -> bool:
        return opt in self.targets

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()

    def path(self, opt: str) -> Path | None:
        """Final destination of ``opt`` (None if the option was not given)."""
        return self.targets.get(opt)

    def _stage(self, opt: str) -> Path:
        """A fresh temporary path, beside the target of ``opt``, to write its content to."""
        target = self.targets[opt]
        parent = target.parent
        try:
            missing = []
            p = parent
            while not p.exists():
                missing.append(p)
                p = p.parent
            parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.extend(missing)
            stage = self._stage_dirs.get(parent)
            if stage is None:
                stage = Path(tempfile.mkdtemp(prefix=".pimgpt-out-", dir=parent))
                self._stage_dirs[parent] = stage
        except OSError as exc:
            raise OutputError(f"{self._name(opt)}: cannot write into {parent} "
                              f"({exc.strerror or exc}); "
                              "choose another path") from None
        tmp = stage / f"{len(self._staged)}-{target.name}"
        self._staged[opt] = tmp
        return tmp

    def write(self, opt: str, write: Callable[[Path], None]) -> None:
        """Stage the content of ``opt``: ``write(tmp_path)`` writes the file."""
        tmp = self._stage(opt)
        try:
            write(tmp)
        except OSError as exc:
            raise OutputError(f"{self._name(opt)}: cannot write {self.targets[opt]} "
                              f"({exc.strerror or exc}); choose another path") from None

    def write_bytes(self, opt: str, data: bytes) -> None:
        self.write(opt, lambda tmp: tmp.write_bytes(data))

    def write_text(self, opt: str, text: str) -> None:
        self.write_bytes(opt, text.encode("utf-8"))

    def write_json(self, opt: str, data, **dump_kwargs) -> None:
        """Stage standard JSON (see :func:`json_text`)."""
        self.write_text(opt, json_text(data, f"{self._name(opt)}: {self.targets[opt]}",
                                       **dump_kwargs))

    def commit(self) -> dict[str, Path]:
        """Move every staged file into place; on any failure restore what was there.

        Returns
        -------
        dict of str to Path
            Option -> written file.
        """
        unwritten = [opt for opt in self.targets if opt not in self._staged]
        if unwritten:
            self.discard()
            raise OutputError(f"{unwritten[0]}: nothing was produced for it; this is a bug")
        mode = _umask_mode()
        done: list[tuple[Path, Path | None]] = []  # (target, backup of the old file)
        try:
            for opt, target in self.targets.items():
                check_destination(self._name(opt), target)  # it may have changed meanwhile
            for opt, tmp in self._staged.items():
                target = self.targets[opt]
                os.chmod(tmp, mode)
                backup = None
                if target.exists():
                    backup = tmp.with_name(tmp.name + ".old")
                    os.replace(target, backup)
                done.append((target, backup))
                os.replace(tmp, target)
        except BaseException as exc:
            for target, backup in reversed(done):
                try:
                    if backup is not None:
                        os.replace(backup, target)
                    else:
                        target.unlink(missing_ok=True)
                except OSError:
                    pass
            self.discard()
            if isinstance(exc, OSError):
                raise OutputError(f"cannot move the outputs into place ({exc.strerror or exc}); "
                                  "nothing was written, choose other paths") from None
            raise
        self._made_dirs.clear()  # they hold outputs now
        self.discard()
        return dict(self.targets)

    def discard(self) -> None:
        """Remove staged files and folders this object created (no target is touched)."""
        for stage in self._stage_dirs.values():
            shutil.rmtree(stage, ignore_errors=True)
        self._stage_dirs.clear()
        self._staged.clear()
        for d in sorted(set(self._made_dirs), key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        self._made_dirs.clear()


def check_destination(opt: str, raw: str | Path) -> Path:
    """Check that ``raw`` can become a file written for option ``opt``; return it as a Path.

    Raises
    ------
    OutputError
        For an empty path, an existing directory or non-file, or a folder that cannot be created
        or written.
    """
    if str(raw) == "":
        raise OutputError(f"{opt} is an empty path; give a file name")
    path = Path(raw)
    if path.is_dir():
        raise OutputError(f"{opt}: {raw} is a directory where a file must go; remove it or "
                          "choose another path")
    if path.exists() and not path.is_file():
        raise OutputError(f"{opt}: {raw} exists and is not a regular file; choose another path")
    _check_parent(opt, path)
    return path


def _check_parent(opt: str, path: Path) -> None:
    parent = path.parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{opt}: {parent} is not a folder; choose another path")
    _probe_writable(opt, parent)


#: Reasons worth naming when a probe file cannot be created (others, such as the ENOENT that
#: /proc gives, would mislead: the folder is there).
_PROBE_REASONS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def _probe_writable(opt: str, folder: Path) -> None:
    """Create and remove a file in ``folder``, or raise :class:`OutputError`.

    ``os.access`` asks the permission bits, which say yes to root everywhere, also in /proc or on
    a read-only mount: the outputs would then fail only after the whole run.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".pimgpt-probe-", dir=folder)
    except OSError as exc:
        why = f" ({exc.strerror.lower()})" if exc.errno in _PROBE_REASONS and exc.strerror else ""
        raise OutputError(f"{opt}: folder {folder} is not writable{why}; choose another "
                          "path") from None
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass  # a folder that takes files but refuses removals; the probe file stays harmless


def check_directory(opt: str, raw: str | Path) -> Path:
    """Check that ``raw`` is, or can be created as, a writable output folder; return it.

    Raises
    ------
    OutputError
        For an empty path, a path that is not a folder, or one that cannot be created or written.
    """
    if str(raw) == "":
        raise OutputError(f"{opt} is an empty path; give a folder")
    path = Path(raw)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{opt}: {raw} exists and is not a folder; give a folder path")
    if path.is_dir():
        _probe_writable(opt, path)
    else:
        _check_parent(opt, path)
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None], opt: str = "output") -> Path:
    """Call ``write(tmp_path)`` then move ``tmp_path`` to ``path``; nothing is left on error.

    Raises
    ------
    OutputError
        When ``path`` cannot be written.
    """
    outs = Outputs({opt: path})
    with outs:
        outs.write(opt, write)
        return outs.commit()[opt]


def atomic_write_text(path: str | Path, text: str, opt: str = "output") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("utf-8")), opt)


def atomic_write_json(path: str | Path, data, opt: str = "output", **dump_kwargs) -> Path:
    """Write ``data`` as standard JSON atomically (see :func:`json_text`)."""
    return atomic_write_text(path, json_text(data, f"{opt}: {path}", **dump_kwargs), opt)
