"""Commands that run a task: ``run`` (your factory) and ``demo`` (the bundled example).

Exit codes of both: 0 the task is COMPLETE; 1 it ended in ERROR or CANCELED (or the
lease was held by a live holder); 3 (``EXIT_BUDGET``) the run stopped because the time
budget could not fit the next stage: work is left, run it again to resume.
``run`` only (it runs under the container runner, :mod:`eleanor_cloud.aws.runner`): on
SIGTERM/SIGINT, 75 the stage finished within the grace period and the run stopped at a
stage boundary; 76 the grace period ran out mid-stage, the attempt was recorded as
interrupted. Both released the lease: run again to resume. ``run --workers N`` runs a
fanned-out stage's shards on local processes instead (:mod:`.workers`): 75 after
SIGINT/SIGTERM with the shards checkpointed at a batch boundary, 130 after a second one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from eleanor_cloud.cli.common import (
    CliContext,
    echo_err,
    fail,
    import_factory,
    json_option,
    pass_cli,
    validate_task_id_arg,
)
from eleanor_cloud.cli.exits import EXIT_USAGE
from eleanor_cloud.cli.output import Output, Progress
from eleanor_cloud.cli.render import short_ts
from eleanor_cloud.cli.run_report import event_printer, exit_code_of
from eleanor_cloud.cli.run_report import report as _report

if TYPE_CHECKING:
    from eleanor_cloud.cli.views import TaskView
    from eleanor_cloud.store.state_store import StateStore

__all__ = ["COMMANDS", "event_printer", "exit_code_of"]


@click.command("run")
@click.argument("factory", metavar="MODULE:FACTORY")
@click.option(
    "--task-id", required=True, callback=validate_task_id_arg, help="The task to run or resume."
)
@click.option(
    "--time-budget",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Start no stage that cannot finish within this many seconds; exit 3 if work is left.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run a fanned-out stage's shards on N local worker processes, then join them; "
    "Ctrl-C checkpoints and stops the workers (exit 75).",
)
@json_option
@pass_cli
def run_cmd(
    state: CliContext,
    factory: str,
    task_id: str,
    time_budget: float | None,
    workers: int | None,
    as_json: bool,
) -> None:
    """Run or resume a task built by MODULE:FACTORY, a callable(task_id, store) -> TaskEngine.

    COMPLETE stages are skipped; an interrupted stage is retried if its budget allows.
    Exits 0 when the task is COMPLETE, 1 on ERROR/CANCELED, 3 when stopped by the time
    budget with work left. A fanned-out stage (one that defines plan()) is planned and
    left to its shards (exit 3) unless --workers N runs them here, with a progress bar
    per shard on a terminal (polled from the store).
    """
    from eleanor_cloud.engine.events import chain_on_event

    build = import_factory(factory)
    engine = build(task_id, state.store)
    if not callable(getattr(engine, "run", None)):
        fail(f"factory {factory!r} returned {type(engine).__name__}, not a TaskEngine", EXIT_USAGE)
    out = Output(json_mode=as_json)
    if workers is not None:
        from eleanor_cloud.cli.workers import run_with_workers

        run_with_workers(out, state, engine, workers, time_budget)
    progress = out.progress()
    chain_on_event(engine, event_printer(progress))
    # The container runner (eleanor_cloud.aws) handles SIGTERM/SIGINT: ECS stops and
    # Fargate Spot interruptions let the stage finish within $ELEANOR_GRACE_SECONDS, or
    # record it as interrupted and release the lease (exit 75 / 76).
    from eleanor_cloud.aws.runner import EXIT_STOPPED, ContainerRunner

    progress.start()
    try:
        outcome = ContainerRunner(engine, time_budget=time_budget).run()
    finally:
        progress.stop()
    if outcome.interrupted:
        what = "recorded as interrupted" if outcome.recorded_interruption else "not recorded"
        echo_err(
            f"eleanor-cloud: {outcome.message}; attempt {what}, lease released: run again to resume"
        )
        outcome.exit()  # the stage's code still runs on another thread: exit now
    stopped = outcome.message if outcome.exit_code == EXIT_STOPPED else None
    raise click.exceptions.Exit(
        _report(out, state, task_id, "run", outcome.summary, stopped=stopped, fanout_hint=True)
    )


def _existing(store: StateStore, task_id: str) -> TaskView | None:
    from eleanor_cloud.cli.views import load_task_view
    from eleanor_cloud.errors import NotFound

    try:
        return load_task_view(store, task_id)
    except NotFound:
        return None


def _announce_resume(progress: Progress, view: TaskView, skew: float) -> None:
    """Say what a resume will skip, what was interrupted, and whether it must wait."""
    from eleanor_cloud.models import StageStatus

    skipped = [s.name for s in view.stages if s.status is StageStatus.COMPLETE]
    progress.note(
        f"resuming task {view.task_id}: stages already COMPLETE are skipped: "
        + (", ".join(skipped) if skipped else "none"),
        style="bold",
    )
    for stage in view.stages:
        if stage.status is StageStatus.RUNNING:
            progress.note(
                f"[{stage.name}] attempt {stage.attempts} is still RUNNING in the "
                "store: its run died mid-stage, so it counts as failed and the "
                "stage runs again"
            )
    lease = view.lease
    if lease is None or lease.lease.released:
        return
    holder = f"{lease.lease.holder} (epoch {lease.epoch})"
    if lease.seconds_left > -skew:
        wait = max(0.0, lease.seconds_left + skew)
        progress.note(
            f"the lease is held by {holder} until "
            f"{short_ts(lease.lease.expires_at)}: waiting up to {wait:.1f}s for it "
            "to expire (a run that died cannot renew it)",
            style="yellow",
        )
    else:
        # Its holder stopped renewing it: it died, or is paused and will be fenced out.
        progress.note(
            f"the lease of {holder} expired at {short_ts(lease.lease.expires_at)} "
            "without being released: taking it over",
            style="yellow",
        )


@click.command("demo")
@click.option(
    "--task-id",
    default="demo",
    show_default=True,
    callback=validate_task_id_arg,
    help="Task id of the demo task.",
)
@click.option(
    "--crash-at",
    type=click.Choice(["generate", "validate", "transform", "publish"]),
    help="Kill this process (SIGKILL) halfway through this stage.",
)
@click.option("--reset", is_flag=True, help="Delete the task first and start afresh.")
@click.option(
    "--seed",
    type=int,
    default=7,
    show_default=True,
    help="Seed of the generated records (fixed once the task has generated them).",
)
@click.option(
    "--records",
    type=click.IntRange(1, 100_000),
    default=240,
    show_default=True,
    help="How many records to generate.",
)
@click.option(
    "--work-delay",
    type=click.FloatRange(min=0),
    default=0.025,
    show_default=True,
    help="Seconds of simulated I/O per batch of 20 records.",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Lease TTL: how soon a crashed run's lease can be taken over.",
)
@click.option(
    "--time-budget",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop before a stage that cannot finish in time (exit 3).",
)
@json_option
@pass_cli
def demo_cmd(
    state: CliContext,
    task_id: str,
    crash_at: str | None,
    reset: bool,
    seed: int,
    records: int,
    work_delay: float,
    lease_ttl: float,
    time_budget: float | None,
    as_json: bool,
) -> None:
    """Run the bundled demo task: generate, validate, transform, publish records.

    Try 'eleanor-cloud demo --reset --crash-at transform' (the process kills itself
    mid-stage), then 'eleanor-cloud demo': it waits for the dead run's lease, skips
    the COMPLETE stages and retries the interrupted one, whose crashed attempt stays in
    the history ('eleanor-cloud history demo').
    """
    from eleanor_cloud.examples.demo import build_demo

    out = Output(json_mode=as_json)
    store = state.store
    skew = min(1.0, lease_ttl / 2)  # one host: clocks agree, keep the takeover prompt
    if reset and _existing(store, task_id) is not None:
        count = store.delete_task(task_id)
        out.line(f"reset: deleted task {task_id} ({count} objects)")
    before = _existing(store, task_id)
    progress = out.progress()
    if before is not None and before.done:
        out.line(
            f"task {task_id} is already {before.status.value}: nothing to run "
            "(use --reset to start afresh)"
        )
        raise click.exceptions.Exit(_report(out, state, task_id, "demo"))

    def on_crash(stage: str) -> None:
        progress.note(
            f"[{stage}] --crash-at {stage}: killing this process (SIGKILL) "
            "halfway through the stage",
            style="bold red",
        )
        progress.stop()
        click.echo("resume it with: eleanor-cloud demo", err=True)

    engine = build_demo(
        task_id,
        store,
        seed=seed,
        records=records,
        work_delay=work_delay,
        crash_at=crash_at,
        progress=progress.advance,
        note=progress.note,
        on_crash=on_crash,
        lease_ttl=lease_ttl,
        wait_for_lease=lease_ttl * 3 + skew + 5.0,
        clock_skew_tolerance=skew,
        on_event=event_printer(progress, default_total=records),
    )
    if before is None:
        out.line(
            f"demo task {task_id}: {records} records (seed {seed}) through generate -> "
            f"validate -> transform -> publish, store {state.store_description}",
            style="bold",
        )
    progress.start()
    try:
        if before is not None:
            _announce_resume(progress, before, skew)
        summary = engine.run(time_budget=time_budget)
    finally:
        progress.stop()
    code = _report(out, state, task_id, "demo", summary)
    if not as_json:
        _show_interruptions(out, state.store, task_id)
    raise click.exceptions.Exit(code)


def _show_interruptions(out: Output, store: StateStore, task_id: str) -> None:
    """Point at the history entries of attempts that did not complete."""
    from eleanor_cloud.cli.views import load_task_view

    view = load_task_view(store, task_id, with_lease=False, with_progress=False)
    for stage in view.stages:
        for entry in stage.history:
            if entry.end_status.value != "COMPLETE":
                out.line(
                    f"history: {stage.name} attempt {entry.attempt}: "
                    f"{entry.begin_status.value} -> {entry.end_status.value}: "
                    f"{entry.message}",
                    style="yellow",
                )


COMMANDS = (run_cmd, demo_cmd)
