"""A search's study: Optuna's storage (a journal file or a database), sampler and pruner, and recovery of
trials cut short (Ctrl-C, a killed process), which are failed so their settings are asked again.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.lifeline import process_alive
from mnist_dnn.experiments.sharing import misbundled, refusal
from mnist_dnn.experiments.tune.space import TunePlan
from mnist_dnn.experiments.tune.storage import missing_driver, refuse_in_memory, repair_journal

STUDY_FILE = "study.journal"  # Optuna's journal storage: an append-only file, nothing to start
SCHEMA_ATTEMPTS = 3  # opening an RDB storage whose tables another process is creating at that moment
TRIALS_DIR = "trials"
OWNERLESS_S = 60.0  # a running trial with no owner recorded this long after it was asked lost its process


def check_tune_dir(out: Path) -> None:
    """--out must be new, empty, or a tune directory (one holding a study or trials): nothing else is written into."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out}: exists and is not a directory")
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise UserInputError(f"--out {out}: {blocking} is not a directory")
    if out.is_dir() and any(out.iterdir()) and not ((out / STUDY_FILE).exists() or (out / TRIALS_DIR).is_dir()):
        raise UserInputError(f"--out {out}: holds other files and is not a tune directory; give a new one")


def check_trials(tune_dir: Path) -> None:
    """Refuse a tune directory whose trials went through a shared program that ignored their config (issue 19).

    Their scores are in the study: a search continued on them would rank settings by runs
    that never trained as those settings say. Nothing is deleted.
    """
    for run_dir in sorted((tune_dir / TRIALS_DIR).glob("trial-*/seed*")):
        reason = misbundled(run_dir)
        if reason is not None:
            raise UserInputError(refusal(tune_dir, run_dir.relative_to(tune_dir).as_posix(), reason))


def storage_url(tune_dir: Path, storage: str | None = None) -> str:
    """--storage as given (an RDB URL: postgresql://..., sqlite:///...; or a journal file), else the tune dir's."""
    return storage if storage else str(tune_dir / STUDY_FILE)


def shown_url(url: str) -> str:
    """--storage as messages and logs show it: an RDB URL's password as ***."""
    if "://" not in url:
        return url
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_storage(url: str):
    """The storage behind --storage: opened now, so a bad URL or a damaged journal is one line, not a traceback.

    A server that is down, a wrong password or a missing database is the connection's first
    error line (psycopg's, for postgresql://), with the password in the URL shown as ***.
    """
    import optuna
    import sqlalchemy.exc
    from optuna.storages.journal import JournalFileBackend

    if "://" in url:
        refuse_in_memory(url)
        racing = (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)
        for attempt in range(1, SCHEMA_ATTEMPTS + 1):
            try:
                return optuna.storages.RDBStorage(url)
            except ImportError as exc:  # SQLAlchemy imports the URL's driver only now
                raise missing_driver(shown_url(url), exc) from None
            except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
                # Processes started together on a fresh database all create Optuna's tables: one wins, the
                # others' CREATE TABLE or version row collides with it, and their next attempt finds them made.
                if isinstance(exc, racing) and attempt < SCHEMA_ATTEMPTS:
                    continue
                problem = str(exc).splitlines()[0]
                raise UserInputError(f"--storage {shown_url(url)}: cannot open it: {problem}") from None
    path = Path(url)
    if path.exists() and not path.is_file():
        raise UserInputError(f"{path}: expected an Optuna journal file, got a directory or special file")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise UserInputError(f"{path}: {blocking} is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_journal(path)  # a torn last record set aside, a file that is not a journal refused
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def make_sampler(name: str, seed: int):
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(name: str, startup: int, warmup: int):
    """'median': prune below the median of earlier trials at the same epoch, once `startup` trials finished,
    from epoch `warmup` on; 'halving': successive halving, the first rung at epoch `warmup`; 'none'."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup))
    return optuna.pruners.NopPruner()


def holds_study(url: str, name: str) -> bool:
    """Whether the storage already holds study `name`: asked before open_study, which would create it."""
    try:
        open_storage(url).get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def open_study(plan: TunePlan, url: str, name: str, sampler: str, pruner: str, startup: int, warmup: int):
    """Create the study, or load it when the storage holds it (it must come from the same definition)."""
    import optuna

    try:
        study = optuna.create_study(
            storage=open_storage(url),
            study_name=name,
            direction="maximize",
            sampler=make_sampler(sampler, plan.study_seed),
            pruner=make_pruner(pruner, startup, warmup),
            load_if_exists=True,
        )
    except UserInputError:
        raise
    except ValueError as exc:  # a damaged journal (json's decode errors included), another study's direction
        raise UserInputError(f"{shown_url(url)}: cannot use it as study {name!r}: {str(exc).splitlines()[0]}") from None
    definition = plan.definition(sampler, pruner, startup, warmup)
    stored = study.user_attrs.get("definition")
    if stored is None:
        study.set_user_attr("definition", definition)
    elif stored != definition:
        changed = ", ".join(key for key in definition if definition[key] != stored.get(key))
        raise UserInputError(
            f"{shown_url(url)}: study {name!r} was made by another command (its {changed} differ); "
            "use another --out or --study-name"
        )
    return study


def _owner_alive(attrs: dict[str, Any]) -> bool:
    """Whether the process running a trial lives; on another machine we cannot tell, so assume it does."""
    pid = attrs.get("pid")
    if not isinstance(pid, int) or attrs.get("host") != socket.gethostname():
        return attrs.get("host") is not None
    return process_alive(pid) and pid != os.getpid()


def _abandoned(trial) -> bool:
    """A running trial whose process died; one without an owner yet was asked a moment ago, unless long ago."""
    owner = trial.user_attrs.get("owner")
    if owner is None:  # another process (a Ray task starting beside this one) is between ask and recording itself
        started = trial.datetime_start
        return started is not None and (datetime.datetime.now() - started).total_seconds() > OWNERLESS_S
    return not _owner_alive(owner)


def recover(study) -> list[int]:
    """Fail the trials whose process died mid-trial and ask their settings again; -> the failed numbers.

    A trial cut short by Ctrl-C is failed on the way out and marked `interrupted`; one
    whose process was killed is still RUNNING in the storage with a dead owner. Each
    such setting is enqueued once, so it runs again under a new number.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING and _abandoned(trial):
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study.tell(trial.number, state=TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    rerun = {trial.user_attrs.get("rerun_of") for trial in trials}
    again = [
        trial
        for trial in trials
        if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted") and trial.number not in rerun
    ]
    for trial in again:
        study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
    return [trial.number for trial in again]


@dataclass(frozen=True)
class StudySpec:
    """Where a study lives and how it searches: what a worker process needs to open it (picklable)."""

    url: str
    name: str
    sampler: str
    pruner: str
    startup: int
    warmup: int

    def open(self, plan: TunePlan):
        return open_study(plan, self.url, self.name, self.sampler, self.pruner, self.startup, self.warmup)


def trial_dir(tune_dir: Path, number: int) -> Path:
    return tune_dir / TRIALS_DIR / f"trial-{number:04d}"


def stray_trial_dirs(tune_dir: Path) -> list[tuple[int, str]]:
    """(number, folder name) of every trial folder in the tune directory, to be matched against the study."""
    found = []
    for path in sorted((tune_dir / TRIALS_DIR).glob("trial-*")):
        number = path.name.removeprefix("trial-")
        if number.isdigit():
            found.append((int(number), path.name))
    return found


def require_optuna() -> None:
    """Optuna is an optional extra: without it, one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise UserInputError("tune needs Optuna: pip install 'mnist-dnn[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines say what its INFO lines would
