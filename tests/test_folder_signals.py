"""A signal at any moment of a folder write leaves the old folder or the complete new one, and says which.

Real `digitvae` processes are stopped with SIGTERM or SIGINT: at each step of the final swap
(through stand-ins for the os and shutil calls of runtime.atomic, see signals.py), and at delays
spread over the command's run. Each run must end in one of two states, reported as such:

- the old folder as it was, no hidden folder beside it, and exit 143/130 with one line that
  says nothing was written (`error: terminated`, or `...; OUT not written (left as it was)`);
- the complete new folder, no hidden folder beside it, and exit 0, or exit 143/130 with one
  line saying `error: terminated after writing OUT (complete, in place)`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from mnist_files import TRAIN_IMAGES, VALID_IMAGES
from signals import STEPS, Ended, at_step_command, command, interrupted_on_return, python_sigint, run, snapshot

from digitvae.runtime.folders.locate import shipped_models_dir

pytestmark = [
    pytest.mark.skipif(
        not Path("/proc/self/status").is_file(), reason="needs Linux's /proc to see when a command has begun"
    ),
    pytest.mark.heavy,  # runs the CLI in child processes and signals them
]

CODES = {signal.SIGTERM: (143, "terminated"), signal.SIGINT: (130, "interrupted")}


def _model_copy(out: Path) -> None:
    shutil.copytree(shipped_models_dir() / "mnist-vae-2d", out / "m")


def _old_repository(out: Path) -> None:
    from digitvae.export.triton import Serving, export_triton

    export_triton(["mnist-vae-2d"], out / "r", serving=Serving(max_batch_size=8))


@dataclass(frozen=True)
class Writer:
    """A command that rewrites a folder: what stands there before, the command, the folder it writes."""

    setup: Callable[[Path], None]
    args: tuple[str, ...]
    target: str
    needs: tuple[str, ...] = ()


WRITERS = {
    "export-triton": Writer(
        _old_repository, ("export-triton", "mnist-vae-2d", "-o", "r", "--force"), "r", ("tritonclient",)
    ),
    "prior fit": Writer(
        _model_copy,
        ("prior", "fit", "m", "--data", str(TRAIN_IMAGES), "--no-labels", "--components", "1", "--samples", "1"),
        "m",
        ("onnx", "sklearn"),
    ),
    "variants": Writer(
        _model_copy, ("variants", "m", "--valid", str(VALID_IMAGES), "--limit", "5", "-k", "2"), "m", ("onnx",)
    ),
}


@dataclass(frozen=True)
class Expected:
    """The folder before a write, after an uninterrupted one, and how long that took."""

    before: dict[str, str]
    after: dict[str, str]
    seconds: float


_expected: dict[str, Expected] = {}


def expected(name: str, tmp_path: Path) -> Expected:
    """Run a writer once without a signal (once per test session); return its folder before and after."""
    writer = WRITERS[name]
    for module in writer.needs:
        pytest.importorskip(module)
    if name not in _expected:
        out = tmp_path / "uninterrupted"
        out.mkdir()
        writer.setup(out)
        before = snapshot(out / writer.target)
        ended = run([*command(), *writer.args], out)
        assert ended.code == 0, ended.stderr
        assert ended.stderr == ""
        after = snapshot(out / writer.target)
        assert after != before, f"{name} wrote the folder it found: the test cannot tell the states apart"
        assert sorted(p.name for p in out.iterdir()) == [writer.target]
        _expected[name] = Expected(before, after, ended.seconds)
    return _expected[name]


def prepared(name: str, tmp_path: Path, want: Expected) -> Path:
    """Return a fresh folder holding what the writer finds before it runs."""
    out = tmp_path / "out"
    out.mkdir()
    WRITERS[name].setup(out)
    assert snapshot(out / WRITERS[name].target) == want.before
    return out


def assert_one_state(name: str, out: Path, ended: Ended, signum: int, want: Expected) -> bool:
    """Assert the run left exactly one of the two states and said which; return whether it wrote the new one."""
    target = WRITERS[name].target
    entries = sorted(p.name for p in out.iterdir())
    assert entries == [target], f"{name}: left {entries} (exit {ended.code}, stderr {ended.stderr!r})"
    now = snapshot(out / target)
    assert now in (want.before, want.after), f"{name}: the folder is neither the old one nor the complete new one"
    written = now == want.after
    assert "Traceback" not in ended.stderr, ended.stderr
    if ended.code == 0:
        assert written, f"{name}: exit 0 but the old folder is in place"
        assert ended.stderr == ""
        return written
    code, word = CODES[signal.Signals(signum)]
    assert ended.code == code, f"{name}: exit {ended.code}, stderr {ended.stderr!r}"
    lines = ended.stderr.splitlines()
    assert len(lines) == 1, f"{name}: stderr is not one line: {ended.stderr!r}"
    if written:
        assert lines[0] == f"error: {word} after writing {target} (complete, in place)"
    else:
        assert lines[0] in (f"error: {word}", f"error: {word}; {target} not written (left as it was)")
    return written


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_the_command_has_finished_changes_nothing(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, signum: int
) -> None:
    """Once the command has written and said so, a signal is ignored: not click's "Aborted!" and exit 1."""
    name = "export-triton"
    want = expected(name, tmp_path_factory.mktemp("expected"))
    out = prepared(name, tmp_path, want)
    ended = run([*at_step_command("closing", signum), *WRITERS[name].args], out)
    assert (ended.code, ended.stderr) == (0, ""), ended
    assert ended.stdout.strip() and snapshot(out / WRITERS[name].target) == want.after


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_python_m_digitvae_train_has_finished_changes_nothing(tmp_path: Path, signum: int) -> None:
    """`python -m digitvae.train` runs its command without the group: once it has finished, a signal is ignored too."""
    pytest.importorskip("torch")
    args = ["--preset", "vae-2d", "--train", str(TRAIN_IMAGES), "--valid", str(VALID_IMAGES), "--epochs", "1"]
    ended = run([*at_step_command("closing", signum, entry="train"), *args, "-o", "run"], tmp_path)
    assert (ended.code, ended.stderr) == (0, ""), ended
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "best.pt").is_file()


def _fast(name: str, step: str, signum: int) -> bool:
    """Say whether a case is in the fast subset (-m 'not slow'): each step of export-triton, one rename of variants.

    `prior fit` (7 s a run here) writes through the same swap as `variants`: its cases are slow.
    """
    if name == "export-triton":  # each step once, the two signals in turn
        return (STEPS.index(step) % 2 == 0) == (signum == signal.SIGTERM)
    return name == "variants" and step == "replace2" and signum == signal.SIGINT


AT_STEP = [
    pytest.param(
        name,
        step,
        signum,
        marks=[] if _fast(name, step, signum) else [pytest.mark.slow],
        id=f"{name}-{step}-{signal.Signals(signum).name}",
    )
    for name in sorted(WRITERS)
    for step in STEPS
    for signum in (signal.SIGTERM, signal.SIGINT)
]


@pytest.mark.parametrize(("name", "step", "signum"), AT_STEP)
def test_a_signal_at_each_step_of_the_swap_leaves_one_state_and_says_which(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, name: str, step: str, signum: int
) -> None:
    want = expected(name, tmp_path_factory.mktemp("expected"))
    out = prepared(name, tmp_path, want)
    ended = run([*at_step_command(step, signum), *WRITERS[name].args], out)
    written = assert_one_state(name, out, ended, signum, want)
    # Making and checking the new folder come before the swap: a signal there leaves the old one.
    # From the first rename on, the swap is finished before the signal is acted on.
    assert written == (step not in ("create", "check")), ended.stderr
    assert ended.code == CODES[signal.Signals(signum)][0]


def _spread(name: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, runs: int) -> None:
    want = expected(name, tmp_path_factory.mktemp("expected"))
    states = []
    for i in range(runs):
        signum = (signal.SIGTERM, signal.SIGINT)[i % 2]
        # From the command's start to a little past its usual end, so that some land on the swap.
        after = want.seconds * 1.1 * i / (runs - 1)
        (tmp_path / str(i)).mkdir()
        out = prepared(name, tmp_path / str(i), want)
        ended = run([*command(), *WRITERS[name].args], out, signum=signum, after=after)
        states.append(assert_one_state(name, out, ended, signum, want))
    assert not all(states), f"{name}: no signal came before the write; the delays miss the command's run"


def test_signals_spread_over_export_triton_leave_one_state(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    _spread("export-triton", tmp_path_factory, tmp_path, runs=6)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_signals_spread_over_each_writer_leave_one_state(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, name: str
) -> None:
    _spread(name, tmp_path_factory, tmp_path, runs=16)


@pytest.mark.parametrize("name", ["export-triton", "variants"])
def test_the_next_writer_recovers_from_a_kill_during_the_swap(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, name: str
) -> None:
    want = expected(name, tmp_path_factory.mktemp("expected"))
    out = prepared(name, tmp_path, want)
    target = WRITERS[name].target
    # SIGKILL between moving the old folder aside and renaming the new one in: no folder at all.
    killed = run([*at_step_command("replace2", signal.SIGKILL), *WRITERS[name].args], out)
    assert killed.code == -signal.SIGKILL
    assert not (out / target).exists()
    hidden = sorted(p.name for p in out.iterdir())
    assert len(hidden) == 2 and all(p.startswith(f".{target}.") for p in hidden), hidden
    ended = run([*command(), *WRITERS[name].args], out)
    assert ended.code == 0, ended.stderr
    assert sorted(p.name for p in out.iterdir()) == [target]
    assert snapshot(out / target) == want.after
    warnings = ended.stderr.splitlines()
    assert any(line.startswith(f"warning: put back {target}") for line in warnings), ended.stderr
    assert sum(line.startswith("warning: removed ") for line in warnings) == 2, ended.stderr


@pytest.mark.parametrize(
    ("args", "output"),
    [
        (("generate", "-n", "4", "--seed", "1", "-o", "x.png"), "x.png"),
        (("evaluate", str(VALID_IMAGES), "--limit", "5", "-k", "2", "--write", "--model", "m"), "m/model.json"),
    ],
    ids=["generate", "evaluate --write"],
)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_at_the_rename_of_a_file_writes_it_and_says_so(
    tmp_path: Path, args: tuple[str, ...], output: str, signum: int
) -> None:
    _model_copy(tmp_path)
    before = snapshot(tmp_path)
    ended = run([*at_step_command("replace1", signum), *args], tmp_path)
    code, word = CODES[signal.Signals(signum)]
    assert ended.code == code, ended.stderr
    assert ended.stderr.splitlines() == [f"error: {word} after writing {output} (complete, in place)"]
    now = snapshot(tmp_path)
    assert now.get(output) is not None and now[output] != before.get(output)
    assert set(now) == set(before) | {output}, "a temporary file was left"


def test_signals_are_acted_on_after_a_held_block() -> None:
    from digitvae.runtime.atomic import signals_held

    with python_sigint():
        done = []
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("after the signal")
        assert done == ["after the signal"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_signal_as_the_temporary_is_made_leaves_nothing_beside_the_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    """The signal held back while the temporary file or folder is made is acted on where it is cleaned up."""
    from digitvae.runtime import atomic

    if kind == "file":
        monkeypatch.setattr(atomic, "_create_temp", interrupted_on_return(atomic._create_temp))
        out = tmp_path / "out.txt"
        out.write_text("old")
        writing = atomic.atomic_write(out, "w")
    else:
        monkeypatch.setattr(atomic, "tempfile", SimpleNamespace(mkdtemp=interrupted_on_return(tempfile.mkdtemp)))
        out = tmp_path / "out"
        out.mkdir()
        (out / "old.txt").write_text("old")
        writing = atomic.swapped_in(out, lambda existing: existing.exists(), str)
    entered = []
    with python_sigint(), pytest.raises(KeyboardInterrupt), writing:
        entered.append(True)
    assert entered == [], "the body ran after the signal"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name], "a temporary was left"
    assert (out.read_text() if kind == "file" else (out / "old.txt").read_text()) == "old"
    assert atomic.write_outcomes()[out] is False


def test_a_file_write_records_what_it_wrote_and_what_it_left(tmp_path: Path) -> None:
    from digitvae.runtime.atomic import atomic_write, write_outcomes

    kept, written = tmp_path / "kept.txt", tmp_path / "written.txt"
    kept.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(kept, "w") as fh:
        fh.write("new")
        raise KeyboardInterrupt
    with atomic_write(written, "w") as fh:
        fh.write("new")
    outcomes = write_outcomes()
    assert outcomes[kept] is False and kept.read_text() == "old"
    assert outcomes[written] is True and written.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt", "written.txt"]


@pytest.mark.parametrize(
    ("signum", "code", "line"), [(signal.SIGTERM, 143, "error: terminated"), (signal.SIGINT, 130, "error: interrupted")]
)
def test_an_error_a_signal_turned_into_is_reported_as_the_signal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], signum: int, code: int, line: str
) -> None:
    from digitvae.cli import console
    from digitvae.runtime import atomic

    # An extension module whose import a signal broke says `ImportError: initialization failed`.
    monkeypatch.setattr(console, "_received", [signum])
    monkeypatch.setattr(console, "ignore_signals", lambda: None)  # leave pytest's own handlers alone
    monkeypatch.setattr(atomic, "_outcomes", {Path("kept.png"): False})
    with pytest.raises(SystemExit) as ended, console.handled_errors():
        raise ImportError("initialization failed")
    assert ended.value.code == code
    assert capsys.readouterr().err == f"{line}; kept.png not written (left as it was)\n"


def test_leftovers_of_a_running_writer_are_left_alone_and_a_dead_ones_tidied(tmp_path: Path) -> None:
    from digitvae.runtime.atomic import recover_leftovers

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead, alive = ended.pid, os.getpid()
    for pid in (dead, alive):
        (tmp_path / f".m.old.{pid}.abcd_123" / "previous").mkdir(parents=True)
        (tmp_path / f".m.old.{pid}.abcd_123" / "previous" / "model.json").write_text(str(pid))
        (tmp_path / f".m.{pid}.xyz_7890").mkdir()
    (tmp_path / ".other.old.1.abcd_123").mkdir()  # another folder's: not ours to touch

    removed = recover_leftovers(tmp_path / "m")
    assert sorted(p.name for p in removed) == [f".m.{dead}.xyz_7890", f".m.old.{dead}.abcd_123"]
    assert (tmp_path / "m" / "model.json").read_text() == str(dead)  # put back where m was missing
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".other.old.1.abcd_123", "m", f".m.old.{alive}.abcd_123", f".m.{alive}.xyz_7890"]
    )
