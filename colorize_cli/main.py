"""The ``colorize`` command: the human entry point over the core library and the flows.

Exit status: 0 when every item succeeded, 1 when some failed (the rest still done), 2 for
usage errors.
"""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from colorize_core.settings import get_settings

_settings = get_settings()
REFINE_CHOICES = click.Choice(["none", "flood"])


class ItemFailed(click.ClickException):
    exit_code = 1


def _beside(out_path: Path) -> Path:
    """A name for OUT's finished file before it is put in place: hidden, beside OUT, this run's own."""
    return out_path.with_name(f".{out_path.stem}.colorize-{uuid.uuid4().hex[:8]}{out_path.suffix}")


def _place(done: Path, out_path: Path, overwrite: bool) -> None:
    """Put the finished file in place as OUT: over it only with --overwrite. OUT written by
    something else since this run checked it (another run to the same OUT) is never replaced
    without it: this run's file is kept beside it, under a name the message gives."""
    if overwrite:
        os.replace(done, out_path)
        return
    try:
        os.link(done, out_path)   # atomic, and never over an existing file
    except FileExistsError:
        kept = out_path.with_name(done.name.lstrip("."))
        os.replace(done, kept)
        raise ItemFailed(f"{out_path} was written by something else while this ran: not replaced (--overwrite "
                         f"replaces it); this run's result is {kept}") from None
    done.unlink()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="colorize-archive")
def cli() -> None:
    """Batch colorization of black-and-white photographs and film for archives."""


# Prefect's ephemeral API server gets 20 s to start by default; on a busy 2-core machine (a
# training run beside it) it has taken longer, and the command died before doing anything.
EPHEMERAL_STARTUP_SECONDS = "120"


def prefect_defaults() -> None:
    """Settings for commands that run a flow, where the environment does not set them: no
    analytics, and time for the ephemeral API server to start on a loaded machine."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_SECONDS)


@contextlib.contextmanager
def exits_once_stopped() -> Iterator[None]:
    """Around a flow run in this process. Ctrl-C, or the SIGTERM of a cancellation, stops the
    flow (which records its job stopped and gives DEST back); this process then exits at most
    ``COLORIZE_EXIT_GRACE_SECONDS`` later. Past that, it names what still holds it up (every
    thread's stack, on stderr: a thread that does not end, Prefect shipping its logs to an API
    that does not answer) and exits anyway."""
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, (Exception, SystemExit)):   # KeyboardInterrupt, Prefect's TerminationSignal
            threading.Thread(target=_exit_after, args=(_settings.exit_grace_seconds,), name="colorize-exit",
                             daemon=True).start()
        raise


def _exit_after(seconds: float) -> None:
    time.sleep(seconds)
    with contextlib.suppress(Exception):   # stderr may be going away with the interpreter
        sys.stderr.write(f"colorize: the flow stopped {seconds:.0f} s ago and this process has not exited; "
                         f"exiting now. What held it up:\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    os._exit(1)


def _check_file_args(in_path: Path, out_path: Path, suffixes: Iterable[str], overwrite: bool, model: str,
                     folder_ok: bool = False) -> None:
    """Usage errors (exit 2) of the single-file commands, before any work is done."""
    from colorize_core import ModelError
    from colorize_core.weights import resolve

    if out_path.suffix.lower() not in suffixes:
        raise click.UsageError(f"OUT must end in one of {', '.join(sorted(suffixes))}")
    if out_path.exists() and not overwrite:
        raise click.UsageError(f"{out_path} exists; pass --overwrite to replace it")
    if not (in_path.is_file() or (folder_ok and in_path.is_dir())):
        raise click.UsageError(f"{in_path} is not a file{' or a folder of frames' if folder_ok else ''}")
    try:
        resolve(model)
    except ModelError as exc:
        raise click.UsageError(str(exc)) from exc


@cli.command()
@click.argument("in_path", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out_path", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default=_settings.model, show_default=True, help="Model name or path to a .pt weights file.")
@click.option("--refine", type=REFINE_CHOICES, default=_settings.refine, show_default=True,
              help="Flood-fill segmentation refinement of the colour regions, or none.")
@click.option("--include-colour", is_flag=True, help="Colorize an input already in colour, from its L.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (refused otherwise).")
@click.option("--device", default=_settings.device, show_default=True, help="auto, cpu, cuda, cuda:1...")
@click.option("--work-size", default=_settings.work_size, show_default=True, help="Model working resolution.")
def image(in_path: Path, out_path: Path, model: str, refine: str, include_colour: bool, overwrite: bool,
          device: str, work_size: int) -> None:
    """Colorize the photograph IN into OUT (format from OUT's extension; original L kept)."""
    from colorize_core import ColorizeError, Colorizer
    from colorize_core.archive import SUFFIX_FORMATS, JobSettings, render_photo
    from colorize_core.color import chroma_spread, luminance
    from colorize_core.images import adapt_to_format, decode_photo

    _check_file_args(in_path, out_path, SUFFIX_FORMATS, overwrite, model)
    fmt = SUFFIX_FORMATS[out_path.suffix.lower()]
    settings = JobSettings(model=model, refine=refine, include_colour=include_colour, work_size=work_size,
                           max_pixels=_settings.max_pixels, device=device)
    try:
        data = in_path.read_bytes()
        photo = decode_photo(data, settings.max_pixels)
        spread = chroma_spread(photo.pixels)
        if spread > settings.colour_threshold and not include_colour:
            raise ItemFailed(f"{in_path} is already in colour (chroma spread {spread:.1f}); "
                             "pass --include-colour to colorize it from its L")
        adapt_to_format(photo, fmt)
        colorizer = Colorizer.load(model, device=device, work_size=work_size)
        lum = luminance(photo.pixels)
        ab = colorizer.predict_ab([lum])[0]
        _, encoded = render_photo(photo, lum, ab, settings, colorizer, hashlib.sha256(data).hexdigest())
    except ColorizeError as exc:
        raise ItemFailed(f"{in_path}: {exc}") from exc
    except OSError as exc:
        raise ItemFailed(f"{in_path}: {exc}") from exc
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _beside(out_path)
    try:
        tmp.write_bytes(encoded)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ItemFailed(f"{out_path}: {exc}") from exc
    _place(tmp, out_path, overwrite)
    for note in photo.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"{out_path} ({photo.width}x{photo.height}, model {colorizer.name}, refine {refine})")


def _printing_density(ctx: click.Context, param: click.Parameter, value: str) -> bool | dict[str, float] | None:
    """--printing-density: auto (None), on, off, or BLACK,WHITE[,GAMMA] checked as a conversion."""
    from colorize_core.color import PrintingDensity

    word = value.strip().lower()
    if word in ("auto", "on", "off"):
        return {"auto": None, "on": True, "off": False}[word]
    try:
        numbers = [float(v) for v in value.split(",")]
        if len(numbers) not in (2, 3):
            raise ValueError("give BLACK,WHITE or BLACK,WHITE,GAMMA")
        given = dict(zip(("black", "white", "gamma"), numbers))
        PrintingDensity(**given)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from None
    return given


def _frame_rate(ctx: click.Context, param: click.Parameter, value: str | None) -> Fraction | None:
    from colorize_core.film import frame_rate

    try:
        return None if value is None else frame_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.argument("in_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("out_path", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default=_settings.model, show_default=True, help="Model name or path to a .pt weights file.")
@click.option("--fps", "frame_rate", default=None, callback=_frame_rate,
              help="Frame rate of a frame sequence (IN a folder of numbered DPX/TIFF/PNG/JPEG 2000 frames), e.g. 24, "
                   "24000/1001 or 23.976 (the same); else its sequence.json's, else the DPX headers'.")
@click.option("--temporal/--no-temporal", default=True, show_default=True,
              help="Temporal ab smoothing within shots (optical flow, reset at cuts).")
@click.option("--refine", type=REFINE_CHOICES, default="none", show_default=True,
              help="Flood-fill refinement per frame.")
@click.option("--batch-size", type=click.IntRange(1, 256), default=_settings.batch_size, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (refused otherwise).")
@click.option("--device", default=_settings.device, show_default=True)
@click.option("--flicker", is_flag=True, help="Measure the warping error (flicker) before and after smoothing.")
@click.option("--audio", "sound", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A frame sequence's sound (.wav/.bwf, .aif/.aiff, .flac), starting with its first frame; else "
                   "the one its sequence.json names, or the one sound file beside the frames.")
@click.option("--printing-density", "log_scan", default="auto", show_default=True, callback=_printing_density,
              metavar="auto|on|off|BLACK,WHITE[,GAMMA]",
              help="A frame sequence in printing density (log) code values: auto as its sequence.json says, else "
                   "as its DPX headers declare; "
                   "on or off whatever they say; or its reference black and white (10-bit code values) "
                   "and gamma, where the scanner was calibrated otherwise than Kodak's 95,685,0.6.")
def video(in_path: Path, out_path: Path, model: str, frame_rate: Fraction | None, temporal: bool, refine: str,
          batch_size: int, overwrite: bool, device: str, flicker: bool, sound: Path | None,
          log_scan: bool | dict[str, float] | None) -> None:
    """Colorize the film IN into OUT: .mkv an FFV1 archival master, .mp4 an H.264 access copy,
    .mov ProRes 422 HQ. Frame count, frame rate and every audio stream (copied) are kept.
    IN may be a folder of numbered frames (a frame sequence), played at --fps, with its sound
    from --audio; what these leave unsaid comes from the folder as the archive flow takes it
    (its sequence.json, the DPX headers' rate, the one sound file beside the frames)."""
    from colorize_core import ColorizeError, Colorizer
    from colorize_core.archive import SEQUENCE_SIDECAR, read_sidecar, sequence_sound
    from colorize_core.film import RENDITIONS, SOUND_SUFFIXES, attach_sound, declared_rate, probe, probe_sequence
    from colorize_core.film_pipeline import colorize_film

    _check_file_args(in_path, out_path, RENDITIONS, overwrite, model, folder_ok=True)
    if frame_rate is not None and not in_path.is_dir():
        raise click.UsageError("--fps is for a frame sequence (IN a folder of frames): a film file keeps its own "
                               "frame rate and timestamps")
    if sound is not None and not in_path.is_dir():
        raise click.UsageError("--audio is for a frame sequence (IN a folder of frames): a film file has its own sound")
    if log_scan is not None and not in_path.is_dir():
        raise click.UsageError("--printing-density is for a frame sequence (IN a folder of scanned frames)")
    if sound is not None and not sound.is_file():
        raise click.UsageError(f"--audio {sound}: no such file")
    told_by = "--printing-density"
    if in_path.is_dir():   # the options first, then what the folder says, as the archive flow reads it
        sidecar = in_path / SEQUENCE_SIDECAR
        try:
            side_rate, side_sound, side_log = read_sidecar(sidecar.read_bytes()) if sidecar.is_file() else (None,) * 3
        except ValueError as exc:
            raise ItemFailed(f"{sidecar}: {exc}") from None
        if sound is None:
            beside = sorted(p.name for p in in_path.iterdir() if p.is_file() and p.suffix.lower() in SOUND_SUFFIXES)
            try:
                name = sequence_sound(beside, side_sound, str(in_path))
            except ValueError as exc:
                raise ItemFailed(f"{in_path}: {exc}{' or give --audio' if side_sound is None else ''}") from None
            if name is not None:
                sound = in_path / name
                click.echo(f"note: the sound is {name}, beside the frames", err=True)
        if log_scan is None and side_log is not None:
            log_scan, told_by = side_log, SEQUENCE_SIDECAR
        frame_rate = frame_rate or side_rate or declared_rate(in_path)   # else as the DPX frames' headers declare it
        if frame_rate is None:
            raise click.UsageError(f"a frame sequence needs its frame rate: --fps 24 (or 25, 24000/1001...), or "
                                   f"its {SEQUENCE_SIDECAR}'s frame_rate; its frames' headers declare none")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    target = _beside(out_path)
    try:
        if in_path.is_dir():
            info = probe_sequence(in_path, frame_rate, _settings.max_pixels, printing_density=log_scan,
                                  told_by=told_by)
            if sound is not None:
                attach_sound(info, sound)
        else:
            info = probe(in_path, _settings.max_pixels)
        colorizer = Colorizer.load(model, device=device)
        with click.progressbar(length=info.frames, label=f"{in_path.name}", file=sys.stderr) as bar:
            result = colorize_film(info, [target], colorizer, temporal=temporal, refine_method=refine,
                                   batch_size=batch_size, measure_flicker=flicker,
                                   on_frame=lambda n: bar.update(n - bar.pos))
    except ColorizeError as exc:
        raise ItemFailed(f"{in_path}: {exc}") from exc
    _place(target, out_path, overwrite)
    for flag in result.flags:
        click.echo(f"note: {flag}", err=True)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    line = f"{out_path} ({result.frames} frames, {len(result.cuts)} cuts, {result.frames / result.seconds:.1f} frames/s)"
    if flicker:
        line += f"; warping error {result.warping_error_unsmoothed:.5f} -> {result.warping_error:.5f}"
    click.echo(line)


@cli.command()
@click.argument("source", required=False)
@click.argument("dest", required=False)
@click.option("--db", "db_url", default=_settings.db_url, show_default=True,
              help="Provenance database URL (sqlite:///path or postgresql://...).")
@click.option("--redo-rejected", "redo_job", metavar="JOB",
              help="Re-run exactly the items of JOB a reviewer rejected, with the parameters asked for "
                   "(SOURCE and DEST default to JOB's).")
@click.option("--redo-damaged", is_flag=True,
              help="Write again, from their originals, the items of DEST whose latest fixity check (colorize verify) "
                   "found an output missing, changed or unreadable, each with its own parameters (SOURCE defaults "
                   "to the one they came from).")
@click.option("--model", default=_settings.model, show_default=True)
@click.option("--refine", type=REFINE_CHOICES, default=_settings.refine, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=_settings.batch_size, show_default=True,
              help="Photos per model call.")
@click.option("--chunk-size", type=click.IntRange(1, 100_000), default=_settings.chunk_size, show_default=True,
              help="Photos per Prefect task run.")
@click.option("--force", is_flag=True, help="Redo items already done with the same model and parameters.")
@click.option("--include-colour", is_flag=True, help="Colorize inputs already in colour (from their L).")
@click.option("--work-size", type=int, default=_settings.work_size, show_default=True)
@click.option("--device", default=_settings.device, show_default=True)
@click.option("--s3-endpoint", default=_settings.s3_endpoint, help="S3 endpoint URL (else boto3's configuration).")
@click.option("--film-renditions", default=".mkv,.mp4", show_default=True,
              help="Film outputs: .mkv (FFV1 master), .mp4 (H.264 access copy), .mov (ProRes 422 HQ).")
@click.option("--temporal/--no-temporal", default=True, show_default=True, help="Temporal ab smoothing of film.")
@click.option("--shot-max-frames", type=click.IntRange(1, 10_000_000), default=1500, show_default=True,
              help="Longest unit of film work; longer shots are split.")
@click.option("--sequence-rate", default="24", show_default=True,
              help="Frame rate of frame sequences without a sequence.json or a rate in their DPX headers "
                   "(24, 25, 24000/1001 or 23.976, the same).")
@click.option("--task-runner", default=_settings.task_runner, show_default=True,
              help="threads, dask (a local Dask cluster) or a Dask scheduler address tcp://host:8786.")
@click.option("--take-over", metavar="JOB", default=None,
              help="Take DEST from JOB, a job known to have stopped whose lease has not yet run out "
                   "(a second job on a DEST is refused while the first renews its lease).")
@click.option("--json", "as_json", is_flag=True, help="Print the job summary as JSON.")
def run(source: str | None, dest: str | None, db_url: str, redo_job: str | None, redo_damaged: bool, model: str,
        refine: str, batch_size: int, chunk_size: int, force: bool, include_colour: bool, work_size: int, device: str,
        s3_endpoint: str | None, film_renditions: str, temporal: bool, shot_max_frames: int, sequence_rate: str,
        task_runner: str, take_over: str | None, as_json: bool) -> None:
    """Run the archive flow: colorize the photos and films under SOURCE into DEST (folders,
    file:// or s3://). Films: video files, and frame sequences (folders of numbered DPX frames,
    or of TIFF/PNG/JPEG 2000 frames with a sequence.json giving {"frame_rate": "24"})."""
    from colorize_core import ColorizeError
    from colorize_core.archive import JobSettings, check_locations
    from colorize_core.errors import DestinationBusyError, RelocationError
    from colorize_core.provenance import ProvenanceStore
    from colorize_core.storage import open_location

    from colorize_core.weights import resolve

    if redo_job and redo_damaged:
        raise click.UsageError("--redo-rejected and --redo-damaged are two kinds of job: one at a time")
    if redo_job:
        source, dest = _redo_locations(db_url, redo_job, source, dest)
    elif redo_damaged:
        source, dest = _repair_locations(db_url, source, dest, s3_endpoint)
    elif not source or not dest:
        raise click.UsageError("give SOURCE and DEST (or --redo-rejected JOB)")
    try:
        src, dst = open_location(source, s3_endpoint), open_location(dest, s3_endpoint)
        src.check()
        check_locations(src, dst)
        resolve(model)
        renditions = [r.strip() if r.strip().startswith(".") else f".{r.strip()}" for r in film_renditions.split(",")]
        JobSettings(film_renditions=tuple(renditions), sequence_rate=sequence_rate)   # refuses a bad --sequence-rate
    except (ColorizeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    try:   # at once, rather than after starting the flow (the flow's own lease is what guards DEST)
        store = ProvenanceStore(db_url)
        store.check_not_relocated(dst.uri, src.uri)
        store.check_dest(dst.uri, _settings.lease_seconds, take_over)
    except DestinationBusyError as exc:
        raise click.ClickException(str(exc)) from exc
    except RelocationError as exc:
        raise click.UsageError(str(exc)) from exc
    except ColorizeError:
        pass   # a database out of reach is the flow's to report, as before
    prefect_defaults()
    from flows.archive import colorize_archive
    from flows.archive import task_runner as make_runner
    from flows.handback import receiving

    try:
        runner = make_runner(task_runner)
    except (ValueError, ImportError) as exc:
        raise click.UsageError(f"--task-runner: {exc}") from exc
    flow = colorize_archive.with_options(task_runner=runner)
    with exits_once_stopped(), receiving() as received:
        state = flow(source=source, dest=dest, db_url=db_url, model=model, refine=refine, batch_size=batch_size,
                     chunk_size=chunk_size, force=force, include_colour=include_colour, work_size=work_size,
                     device=device, s3_endpoint=s3_endpoint, film_renditions=renditions, temporal=temporal,
                     shot_max_frames=shot_max_frames, sequence_rate=sequence_rate, redo_job=redo_job,
                     take_over=take_over, redo_damaged=redo_damaged, return_state=True)
    summary = _summary_of(state, received, "the archive flow")
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        c = summary["counts"]
        click.echo(f"job {summary['job_id']}: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed")
        click.echo(f"colour images and films: {dest}")
        click.echo(f"manifest:      {summary['manifest']['html']}")
        click.echo(f"               {summary['manifest']['json']}")
        click.echo(f"provenance:    {summary['db_url']}")
    sys.exit(1 if summary["counts"]["failed"] else 0)


def _redo_locations(db_url: str, job_id: str, source: str | None, dest: str | None) -> tuple[str, str]:
    """SOURCE and DEST of a redo: the job's own unless given; the job must have rejections."""
    from colorize_core import ColorizeError
    from colorize_core.provenance import ProvenanceStore
    from colorize_core.review import rejected

    try:
        store = ProvenanceStore(db_url)
        job = store.job(job_id)
        if job is None:
            raise click.UsageError(f"no job {job_id} in {store.url}")
        if not rejected(store, job_id):
            raise click.UsageError(f"job {job_id} has no rejected items waiting for a redo")
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    return source or job.source, dest or job.dest


def _repair_locations(db_url: str, source: str | None, dest: str | None, s3_endpoint: str | None) -> tuple[str, str]:
    """SOURCE and DEST of a repair (``run [SOURCE] DEST --redo-damaged``): SOURCE is the one the
    damaged items came from when not given; there must be damaged items from it."""
    from colorize_core import ColorizeError
    from colorize_core.fixity import damaged_sources, repair_groups
    from colorize_core.storage import open_location

    if dest is None:
        source, dest = None, source
    if dest is None:
        raise click.UsageError("give DEST (and SOURCE, if its damaged items came from more than one)")
    try:
        store, dst = _store(db_url), open_location(dest, s3_endpoint)
        if source is None:
            sources = damaged_sources(store, dst.uri)
            if len(sources) != 1:
                raise click.UsageError(
                    f"the damaged items of {dst.uri} came from {', '.join(sources)}: give SOURCE, one at a time"
                    if sources else f"no damaged items in {dst.uri}: every output its latest fixity check read was "
                                    f"intact (`colorize verify {dest}` checks again)")
            source = sources[0]
        repair_groups(store, open_location(source, s3_endpoint).uri, dst.uri)
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    return source, dest


@cli.group()
def review() -> None:
    """Review a job's outputs: list them, approve, reject (and ask for a redo)."""


_db_option = click.option("--db", "db_url", default=_settings.db_url, show_default=True,
                          help="Provenance database URL.")


@review.command("list")
@click.argument("job_id", metavar="JOB")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print a review sheet (CSV) to fill in (new_decision, note, redo) and record with `review apply`.")
def review_list(job_id: str, db_url: str, as_json: bool, as_csv: bool) -> None:
    """The items of JOB with their status, what needs attention, and the decisions taken."""
    from colorize_core import ColorizeError
    from colorize_core.manifest import spooled_manifest

    if as_json and as_csv:
        raise click.UsageError("--json or --csv, not both")
    try:   # a nightly job's manifest has an item per original: read back an item at a time
        with spooled_manifest(_store(db_url), job_id) as manifest:
            _list_items(manifest, as_json, as_csv)
    except KeyError:
        raise click.UsageError(f"no job {job_id} in {db_url}") from None
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc


def _list_items(manifest, as_json: bool, as_csv: bool) -> None:  # noqa: ANN001
    """`review list`'s output, from the job's spooled manifest."""
    from colorize_core.review import write_sheet

    if as_csv:
        for line in write_sheet(manifest.attention_first()):
            click.echo(line, nl=False)
        return
    if as_json:   # json.dumps(list, indent=1), an item at a time
        keys = ("id", "rel_path", "status", "media_type", "attention", "decision", "review", "colour", "error")
        for n, it in enumerate(manifest.items()):
            text = json.dumps({k: it[k] for k in keys}, indent=1, default=str).replace("\n", "\n ")
            click.echo(f"{',' if n else '['}\n {text}", nl=False)
        click.echo("\n]" if len(manifest) else "[]")
        return
    job = manifest.job
    click.echo(f"job {job['id']} ({job['status']}): {job['source']} -> {job['dest']}")
    for it in manifest.attention_first():
        decision = f" [{it['decision']} by {it['review'][-1]['by']}]" if it["decision"] else ""
        attention = f" ({', '.join(it['attention'])})" if it["attention"] else ""
        click.echo(f"{it['id']:>8}  {it['status']:<8} {it['rel_path']}{attention}{decision}")


def _store(db_url: str):  # noqa: ANN202
    from colorize_core.provenance import ProvenanceStore

    return ProvenanceStore(db_url)


SHOWN_LEFT = 50   # items left to decide one by one, listed after `review approve --job`


def _decide(items: tuple[int, ...], decision: str, by: str, note: str, redo: tuple[str, ...], db_url: str,
            job_id: str | None = None, as_json: bool = False) -> None:
    from colorize_core import ColorizeError
    from colorize_core.review import parse_redo, take_decisions

    try:
        store = _store(db_url)
        decisions, clear = take_decisions(store, decision, by, items, job_id, note, parse_redo(redo))
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    _report_decisions(store, decisions, clear, job_id, by, as_json)


def _report_decisions(store, decisions: list[dict], clear, job_id: str | None, by: str,  # noqa: ANN001
                      as_json: bool) -> None:
    """Render again the manifests that show the decisions, and say what was decided (and left)."""
    from colorize_core.manifest import refresh_jobs

    # The manifests show decisions: render again those of the jobs that hold the items (and the job named).
    problems = refresh_jobs(store, [d["job_id"] for d in decisions] + ([job_id] if job_id else []),
                            _settings.s3_endpoint)
    if as_json:
        click.echo(json.dumps({"decisions": decisions, "left": clear.__dict__ if clear else None,
                               "manifests_not_refreshed": {j: p for j, p in problems.items() if p}},
                              indent=1, default=str))
    elif clear is None:
        for d in decisions:
            click.echo(f"item {d['item_id']} ({d['rel_path']}): {d['decision']} by {d['by']}"
                       + (f"; redo with {', '.join(f'{k}={v}' for k, v in d['redo'].items())}" if d["redo"] else "")
                       + (f"; `colorize run --redo-rejected {d['job_id']}` runs it" if d["decision"] == "rejected"
                          else ""))
    else:
        click.echo(f"job {job_id}: {len(decisions)} item(s) approved by {by.strip()}, those that needed no attention "
                   f"and had no decision yet")
        if clear.decided:
            click.echo(f"{clear.decided} item(s) already decided, left as they were")
        if clear.without_rendition:
            click.echo(f"{clear.without_rendition} item(s) skipped with no colour rendition to review")
        if clear.attention:
            click.echo(f"{len(clear.attention)} item(s) need attention, left to decide one by one "
                       "(`colorize review approve|reject ITEM ...`):")
            for it in clear.attention[:SHOWN_LEFT]:
                click.echo(f"{it['id']:>8}  {it['rel_path']} ({', '.join(it['reasons'])})")
            if len(clear.attention) > SHOWN_LEFT:
                click.echo(f"... and {len(clear.attention) - SHOWN_LEFT} more: `colorize review list {job_id}`")
    for problem in problems.values():
        if problem:
            click.echo(f"warning: decisions recorded, but {problem}", err=True)


_by_option = click.option("--by", required=True, help="Reviewer's name.")


@review.command("approve")
@click.argument("items", metavar="[ITEM]...", nargs=-1, type=int)
@click.option("--job", "job_id", default=None,
              help="Approve every item of JOB that needs no attention and has no decision yet (instead of ITEMs); "
                   "those that need attention are listed, to decide one by one.")
@_by_option
@click.option("--note", default="", help="Why, for the record.")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the decisions (and what was left) as JSON.")
def review_approve(items: tuple[int, ...], job_id: str | None, by: str, note: str, db_url: str, as_json: bool) -> None:
    """Approve the colour renditions of ITEMs (all or none: an item that cannot be approved
    stops them all), or with --job those of JOB's items that need no attention."""
    _decide(items, "approved", by, note, (), db_url, job_id, as_json)


@review.command("reject")
@click.argument("items", metavar="ITEM...", nargs=-1, type=int, required=True)
@_by_option
@click.option("--note", required=True, help="What is wrong, for the record.")
@click.option("--redo", multiple=True, metavar="KEY=VALUE",
              help="Re-run with other parameters: model=NAME, refine=none|flood, work_size=N, temporal=true|false, "
                   "strength=0..1, include_colour=true|false. Repeatable.")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
def review_reject(items: tuple[int, ...], by: str, note: str, redo: tuple[str, ...], db_url: str,
                  as_json: bool) -> None:
    """Reject the colour renditions of ITEMs (all or none), optionally asking for a redo with
    other parameters."""
    _decide(items, "rejected", by, note, redo, db_url, None, as_json)


@review.command("apply")
@click.argument("sheet", type=click.File("rb"))
@_by_option
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
def review_apply(sheet, by: str, db_url: str, as_json: bool) -> None:  # noqa: ANN001
    """Record the decisions of a filled-in review sheet (`review list JOB --csv`; - reads stdin):
    every row whose new_decision is approve or reject, with its note and redo, all or none."""
    from colorize_core import ColorizeError
    from colorize_core.review import apply_sheet

    try:
        store = _store(db_url)
        decisions = apply_sheet(store, sheet.read(), by)
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    _report_decisions(store, decisions, None, None, by, as_json)


@cli.command()
@_db_option
@click.option("--dest", default=None, help="Only the jobs that wrote to this DEST (folder, file:// or s3://).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
def jobs(db_url: str, dest: str | None, limit: int, as_json: bool) -> None:
    """The newest jobs: status, items done, skipped and failed, and whether a running one is
    still alive (it renews its lease on DEST) or has stopped without finishing."""
    from colorize_core import ColorizeError
    from colorize_core.provenance import utcnow
    from colorize_core.storage import open_location

    try:
        store = _store(db_url)
        uri = open_location(dest, _settings.s3_endpoint).uri if dest else None
        rows = store.jobs(limit, uri)
        moved = store.relocated_away(uri) if uri and not rows else None
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    now = utcnow()
    for job in rows:
        job["activity"] = _activity(job, now)
    if as_json:
        click.echo(json.dumps(rows, indent=1, default=str))
        return
    if not rows:
        click.echo(f"no jobs{f' for {dest}' if dest else ''} in {db_url}" + (
            f": it was relocated to {moved.new} at {moved.at:%Y-%m-%d %H:%M} UTC (colorize jobs --dest {moved.new})"
            if moved else ""))
    for job in rows:
        c, end = job["counts"], f" - {job['finished_at']:%H:%M:%S}" if job["finished_at"] else ""
        click.echo(f"{job['id']}  {job['started_at']:%Y-%m-%d %H:%M:%S}{end} UTC  {job['activity']}")
        click.echo(f"    {job['source']} -> {job['dest']}  model {job['model_name']}: {c['done']} done, "
                   f"{c['skipped']} skipped, {c['failed']} failed")


def _activity(job: dict, now) -> str:  # noqa: ANN001
    """A job's status, and for one still marked running, whether it is: its lease says."""
    if job["status"] != "running":
        return job["status"]
    lease = job["lease"]
    if lease is None:
        return "running? it holds no lease on DEST: it stopped without finishing (or predates leases)"
    h = lease["holder"]
    where = " ".join(f"{k} {h[k]}" for k in ("host", "pid") if h.get(k))
    idle = (now - lease["renewed_at"]).total_seconds()
    if idle < _settings.lease_seconds:
        return f"running ({where}, lease renewed {idle:.0f} s ago)"
    return (f"stopped? ({where}) its lease has not been renewed for {idle:.0f} s; the next job on DEST takes it "
            f"over")


@cli.command()
@click.argument("dest", required=False)
@click.option("--job", "job_id", metavar="JOB", default=None,
              help="Only the outputs JOB shows (those it wrote and those it skipped as done); DEST is JOB's if not given.")
@_db_option
@click.option("--s3-endpoint", default=_settings.s3_endpoint, help="S3 endpoint URL (else boto3's configuration).")
@click.option("--chunk-size", type=click.IntRange(1, 1_000_000), default=500, show_default=True,
              help="Items per task (Prefect task run).")
@click.option("--unrecorded/--no-unrecorded", default=True, show_default=True,
              help="Also list files in DEST that no record accounts for, and partial copies of writes that did "
                   "not finish.")
@click.option("--remove-interrupted", is_flag=True,
              help="Remove the partial copies (hidden .colorize-tmp-* files) that writes killed mid-way left in DEST.")
@click.option("--unchecked-for", "unchecked_for", type=click.FloatRange(0, min_open=True), default=None,
              metavar="DAYS", help="Only the items whose last fixity check is older than DAYS (a rolling check).")
@click.option("--max-items", type=click.IntRange(1), default=None, help="Check at most N items (lowest ids first).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def verify(dest: str | None, job_id: str | None, db_url: str, s3_endpoint: str | None, chunk_size: int,
           unrecorded: bool, remove_interrupted: bool, unchecked_for: float | None, max_items: int | None,
           as_json: bool) -> None:
    """Fixity check of DEST: read back every output the provenance database records there and
    compare its sha256 with the recorded one (a 'fixity check' event on each item); list the
    files there that no record accounts for, and the partial copies of writes that did not
    finish (a process killed mid-write). Exit 1 if any output is missing, changed or
    unreadable."""
    if remove_interrupted and not unrecorded:
        raise click.UsageError("--remove-interrupted needs the search that --no-unrecorded turns off")
    from colorize_core import ColorizeError
    from colorize_core.fixity import check_scope
    from colorize_core.storage import open_location

    try:
        store = _store(db_url)
        if dest is None:
            if job_id is None:
                raise click.UsageError("give DEST (or --job JOB)")
            job = store.job(job_id)
            if job is None:
                raise click.UsageError(f"no job {job_id} in {store.url}")
            dest = job.dest
        check_scope(store, open_location(dest, s3_endpoint), job_id)
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    prefect_defaults()
    from flows.fixity import verify_fixity
    from flows.handback import receiving

    with exits_once_stopped(), receiving() as received:
        state = verify_fixity(dest=dest, db_url=db_url, job_id=job_id, chunk_size=chunk_size,
                              look_for_unrecorded=unrecorded, s3_endpoint=s3_endpoint,
                              unchecked_for_days=unchecked_for, max_items=max_items,
                              remove_interrupted=remove_interrupted, return_state=True)
    summary = _summary_of(state, received, "the fixity check")
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        c, found = summary["counts"], summary["unrecorded"]
        due = " ".join(filter(None, [f"not checked since {summary['not_checked_since'][:16]} UTC"
                                     if summary["not_checked_since"] else "",
                                     f"at most {summary['max_items']}" if summary["max_items"] else ""]))
        click.echo(f"{summary['dest']}: {summary['items']} item(s){f' ({due})' if due else ''}, "
                   f"{sum(c.values())} output(s) read back: " + ", ".join(f"{c[k]} {k}" for k in c))
        for p in summary["problems"]:
            was = (f": recorded sha256 {p['recorded_sha256'][:16]}... {p['recorded_size']} bytes, now "
                   f"{p['found_sha256'][:16]}... {p['found_size']} bytes") if p["status"] == "changed" else ""
            why = f": {p['error']}" if p.get("error") else ""
            click.echo(f"{p['status'].upper():<10} {p['uri']}{was}{why}\n{'':<11}{p['kind']} of {p['source']} "
                       f"(item {p['item_id']}, job {p['job_id']})")
        if found["looked"]:
            click.echo(f"{len(found['files'])} file(s) in DEST that no record accounts for"
                       + (":" if found["files"] else ""))
            for f in found["files"]:
                click.echo(f"UNRECORDED {f['uri']} ({f['size']} bytes)")
            for f in found["interrupted"]:
                click.echo(f"INTERRUPTED {f['uri']} ({f['size']} bytes): the partial copy of a write that did not "
                           f"finish, {'removed' if f['removed'] else 'kept (--remove-interrupted removes it)'}")
        elif unrecorded:
            click.echo(f"unrecorded files not looked for: {found['why']}")
        click.echo(f"fixity check events recorded in {summary['db_url']}")
        if summary["problems"]:
            click.echo(f"to write the damaged items again from their originals: colorize run {summary['dest']} "
                       f"--redo-damaged --db {db_url}")
    sys.exit(1 if summary["problems"] else 0)


@cli.command()
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@_db_option
@click.option("--s3-endpoint", default=_settings.s3_endpoint, help="S3 endpoint URL (else boto3's configuration).")
@click.option("--chunk-size", type=click.IntRange(1, 1_000_000), default=500, show_default=True,
              help="Items per task (Prefect task run).")
@click.option("--source", "of_source", is_flag=True,
              help="OLD and NEW are a SOURCE: the originals were copied, and the records of every job that read them "
                   "follow (any DEST).")
@click.option("--accept-damaged", is_flag=True,
              help="Relocate even if files are missing, changed or unreadable at NEW; outputs are recorded damaged "
                   "(colorize run NEW --redo-damaged writes them again), originals recorded in their transfer events.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def relocate(old: str, new: str, db_url: str, s3_endpoint: str | None, chunk_size: int, of_source: bool,
             accept_damaged: bool, as_json: bool) -> None:
    """DEST OLD has been copied to NEW (another folder, NAS or S3 bucket, by rsync or aws s3
    sync): read back at NEW every output the provenance database records in OLD, compare its
    sha256 with the record, and when all are intact point the records at NEW (a 'transfer' and
    a 'fixity check' event on each item); the manifests at NEW are rendered again. With
    --source, OLD is a SOURCE whose originals were copied: each is read back at NEW and
    compared with the sha256 recorded when a job last read it. Nothing is changed if a file is
    not intact at NEW (exit 1). OLD is left as it is; jobs on it are refused from then on."""
    from colorize_core import ColorizeError
    from colorize_core.errors import DestinationBusyError
    from colorize_core.relocation import relocated, relocation_scope, source_scope
    from colorize_core.storage import open_location

    try:
        store = _store(db_url)
        old_loc, new_loc = open_location(old, s3_endpoint), open_location(new, s3_endpoint)
        if relocated(store, old_loc, new_loc, "source" if of_source else "dest"):
            pass   # done already: the flow renders the views again
        elif of_source:
            source_scope(store, old_loc, new_loc, _settings.lease_seconds)
        else:
            relocation_scope(store, old_loc, new_loc)
        for uri in () if of_source else (old_loc.uri, new_loc.uri):   # at once, rather than after starting the flow
            store.check_dest(uri, _settings.lease_seconds)
    except DestinationBusyError as exc:
        raise click.ClickException(str(exc)) from exc
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    prefect_defaults()
    from flows.handback import receiving
    from flows.relocation import relocate_dest, relocate_source_flow

    with exits_once_stopped(), receiving() as received:
        state = (relocate_source_flow if of_source else relocate_dest)(
            old=old, new=new, db_url=db_url, chunk_size=chunk_size, s3_endpoint=s3_endpoint,
            accept_damaged=accept_damaged, return_state=True)
    summary = _summary_of(state, received, "the relocation")
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    elif summary.get("already"):
        click.echo(state.message)
    else:
        c = summary["counts"]
        click.echo(f"{summary['items']} item(s), {sum(c.values())} {'original' if of_source else 'output'}(s) read "
                   f"back at {summary['new']}: "
                   + ", ".join(f"{c[k]} {k}" for k in c))
        for p in summary["problems"]:
            was = (f": recorded sha256 {p['recorded_sha256'][:16]}... {p['recorded_size']} bytes, found "
                   f"{p['found_sha256'][:16]}... {p['found_size']} bytes") if p["status"] == "changed" else ""
            why = f": {p['error']}" if p.get("error") else ""
            click.echo(f"{p['status'].upper():<10} {p['uri']}{was}{why}\n{'':<11}{p['kind']} of {p['source']} "
                       f"(item {p['item_id']}, job {p['job_id']})")
        if summary["relocated"] and of_source:
            m = summary["moved"]
            click.echo(f"relocated {summary['old']} to {summary['new']}: {m['items']} item(s), {m['shots']} film "
                       f"unit(s) and {m['jobs']} job(s) now name it; events recorded in {summary['db_url']}")
            click.echo(f"a job on {summary['new']} skips the {m['versions_taken']} original(s) read intact there "
                       f"without reading them again: their size and version there (modification time or ETag) are "
                       f"recorded")
            click.echo(f"pages rendered again in {len(summary['views'])} DEST(s); {summary['old']} is no longer "
                       f"referenced (remove it when you are ready)")
        elif summary["relocated"]:
            m = summary["moved"]
            click.echo(f"relocated {summary['old']} to {summary['new']}: {len(summary['jobs'])} job(s), {m['items']} "
                       f"item(s), {m['outputs']} output record(s) now name it; events recorded in {summary['db_url']}")
            if m["items_not_intact"]:
                click.echo(f"{m['items_not_intact']} item(s) recorded damaged: colorize run {summary['new']} "
                           f"--redo-damaged --db {db_url} writes them again from their originals")
            click.echo(f"manifests rendered again at {summary['new']}; {summary['old']} is no longer referenced "
                       f"(remove it when you are ready)")
        else:
            click.echo(f"not relocated: nothing was changed. Copy the files above to {summary['new']} again and "
                       f"relocate again, or accept them as damaged with --accept-damaged")
    sys.exit(0 if summary["relocated"] else 1)


def _summary_of(state: Any, received: Any, what: str) -> dict[str, Any]:
    """The summary the flow run handed back (flows.handback): the data of its Completed state, or
    of the Failed state of a check that found damage; exit 1 when it did not get that far (an
    error, crashed, cancelled)."""
    summary = received.summary(state)
    if not isinstance(summary, dict):
        click.echo(f"{what} did not complete: {state.message}", err=True)
        sys.exit(1)
    return summary


@cli.command("export")
@click.argument("job_id", metavar="JOB")
@click.option("--what", default="iiif,premis,prov", show_default=True,
              help="Comma-separated: iiif (Presentation 3 manifest), premis (PREMIS 3 XML), prov (W3C PROV-JSON); "
                   "manifest (the review pages and manifest.json, written again: after the job's own write failed).")
@_db_option
@click.option("--base-url", default=_settings.public_base_url,
              help="Public HTTP(S) URL of DEST, for IIIF ids (COLORIZE_PUBLIC_BASE_URL).")
@click.option("--source-base-url", default=_settings.source_base_url,
              help="Public URL of SOURCE, to show the originals themselves in IIIF viewers (else their thumbnails).")
def export(job_id: str, what: str, db_url: str, base_url: str | None, source_base_url: str | None) -> None:
    """Write JOB's exports for archive systems under DEST/manifests/JOB/ (and its manifest again)."""
    from colorize_core import ColorizeError
    from colorize_core.exports import write_exports
    from colorize_core.manifest import index_job, refresh_manifest
    from colorize_core.storage import open_location

    kinds = tuple(k.strip() for k in what.split(",") if k.strip())
    bad = [k for k in kinds if k not in ("iiif", "premis", "prov", "manifest")]
    if bad or not kinds:
        raise click.UsageError(f"--what: unknown export(s) {', '.join(bad) or '(none)'}; choose from iiif, premis, "
                               "prov, manifest")
    for url in (base_url, source_base_url):
        if url and not url.startswith(("http://", "https://")):
            raise click.UsageError(f"{url}: IIIF viewers need an http:// or https:// URL")
    store = _store(db_url)
    job = store.job(job_id)
    if job is None:
        raise click.UsageError(f"no job {job_id} in {store.url}")
    if "manifest" in kinds and job.status == "running":
        raise click.UsageError(f"job {job_id} is still running (or stopped without finishing: `colorize jobs` tells "
                               "which): it writes its manifest when it ends")
    dest = open_location(job.dest, _settings.s3_endpoint)
    try:
        uris = {}
        if "manifest" in kinds:   # DEST's index too when this is DEST's newest job (or shows it already)
            index = store.jobs(limit=1, dest=job.dest)[0]["id"] == job_id or index_job(dest) in (None, job_id)
            pages = refresh_manifest(store, job_id, dest, index=index)
            uris.update({"manifest": pages["job_html"], "manifest json": pages["job_json"],
                         **({"index": pages["html"]} if index else {})})
        if exports := tuple(k for k in kinds if k != "manifest"):
            uris.update(write_exports(store, job_id, dest, exports, base_url, source_base_url))
    except ColorizeError as exc:
        raise ItemFailed(str(exc)) from exc
    for kind, uri in uris.items():
        click.echo(f"{kind}: {uri}")


@cli.command()
def models() -> None:
    """List the models available by name, with their weights sha256."""
    from colorize_core.weights import available_models, resolve

    for name in available_models():
        w = resolve(name)
        click.echo(f"{name}\t{w.card.get('arch', '?')}\tsha256:{w.sha256}\t{w.path}")


@cli.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--debs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with the Debian packages (downloaded with apt-get download if missing).")
@click.option("--from", "source", default=None,
              help="Index your own colour photographs instead: a folder, file:// or s3:// URI.")
@click.option("--licence", default=None, help="With --from: the photographs' licence, recorded in every model card.")
@click.option("--s3-endpoint", default=_settings.s3_endpoint, help="S3 endpoint URL (else boto3's configuration).")
def dataset(out: Path, debs: Path | None, source: str | None, licence: str | None, s3_endpoint: str | None) -> None:
    """Assemble a training set in OUT: the packaged sources DEVELOPERS.md lists, or (--from) an
    archive's own colour photographs. Writes sources.json (every image with its checksums,
    origin, licence and picture group) and skipped.json (every file left out, with why)."""
    from colorize_core import ColorizeError
    from colorize_core.datasets import build_dataset

    try:
        result = build_dataset(out, source, licence, debs, s3_endpoint)
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    for origin, n in result.origins().items():
        click.echo(f"{n:5d}  {origin}")
    for reason, n in result.left_out().items():
        click.echo(f"{n:5d}  left out: {reason}")
    click.echo(f"{len(result.records)} images of {result.pictures} pictures; sources with checksums and licences in "
               f"{out / 'sources.json'}, files left out in {out / 'skipped.json'}")


@cli.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="default", show_default=True)
@click.option("--arch", default="unet-pretrained", show_default=True)
@click.option("--steps", default=1100, show_default=True)
@click.option("--batch-size", default=12, show_default=True)
@click.option("--crop", default=192, show_default=True)
@click.option("--lr", type=float, default=None, help="Learning rate (default: the objective's, 3e-4 or 2e-4 for pix2pix).")
@click.option("--device", default="auto", show_default=True)
@click.option("--encoder", type=click.Choice(["efficientnet-lite0", "resnet18", "vgg16"]), default=None,
              help="unet-pretrained: the ImageNet encoder [default: efficientnet-lite0, shipped].")
@click.option("--encoder-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="unet-pretrained: the encoder's ImageNet weights file, e.g. torchvision's resnet18-f37072fd.pth "
                   "or vgg16-397923af.pth (never downloaded).")
def train(data: Path, out: Path, name: str, arch: str, steps: int, batch_size: int, crop: int, lr: float | None,
          device: str, encoder: str | None, encoder_weights: Path | None) -> None:
    """Train a model on an assembled dataset; resumes from OUT/checkpoint.pt if present (a larger
    --steps than the checkpoint's run goes on training, the schedule laid over the new total)."""
    from colorize_core import ColorizeError
    from colorize_core.training import TrainConfig, encoder_options
    from colorize_core.training import train as run_training

    clear = "\r\x1b[2K" if sys.stderr.isatty() else ""  # a line printed over the bar, which redraws below it
    try:
        options = encoder_options(arch, encoder, str(encoder_weights) if encoder_weights else None)
        config = TrainConfig(arch=arch, arch_options=options, steps=steps, batch_size=batch_size, crop=crop, lr=lr,
                             device=device, checkpoint_every=100)
        with click.progressbar(length=steps, label=f"training {name}", file=sys.stderr, show_pos=True,
                               item_show_func=lambda loss: None if loss is None else f"loss {loss:.4f}") as bar:
            weights = run_training(data, out, name, config, command="colorize train " + " ".join(sys.argv[2:]),
                                   log=lambda line: click.echo(clear + line),
                                   progress=lambda step, _, loss: bar.update(step - bar.pos, loss))
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"weights: {weights}")


@cli.command(name="export-model")
@click.argument("model")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx", "caffe"]), default="onnx", show_default=True,
              help="onnx: for onnxruntime; caffe: Zhang et al.'s layout for OpenCV DNN (zhang-classifier only).")
@click.option("--name", default=None, help="Name of the exported model (default: MODEL-FORMAT).")
@click.option("--input", "convention", type=click.Choice(["l_unit", "gray_rgb"]), default="l_unit",
              show_default=True, help="ONNX input: L / 100, or the gray image as RGB in [0, 1] (DDColor's).")
@click.option("--input-size", type=int, default=None, help="ONNX: a fixed square input side (default: any).")
def export_model(model: str, out: Path, fmt: str, name: str | None, convention: str, input_size: int | None) -> None:
    """Export MODEL for an external runner into OUT, with a descriptor OUT/NAME.json that
    `--model OUT/NAME.json` (or NAME, with OUT in COLORIZE_MODEL_DIRS) loads."""
    from colorize_core import ColorizeError
    from colorize_core.models.export import export_caffe, export_onnx
    from colorize_core.weights import resolve

    try:
        weights = resolve(model)
        name = name or f"{weights.name}-{fmt}"
        descriptor = (export_caffe(weights, out, name) if fmt == "caffe"
                      else export_onnx(weights, out, name, convention, input_size))
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"exported {weights.name} as {fmt}: {descriptor}")


@cli.command(name="eval")
@click.argument("dataset")
@click.argument("dest")
@click.option("--model", "models", multiple=True, default=["default"], show_default=True,
              help="A model name, .pt path or external model's .json; repeat to compare several.")
@click.option("--refine", default="none,flood", show_default=True,
              help="Refinement methods to evaluate each model with, comma-separated.")
@click.option("--residue", default=0, show_default=True, help="Held-out split: the picture groups in this bucket (0-9) of the dataset.")
@click.option("--limit", type=int, default=None, help="Evaluate only the first N held-out images.")
@click.option("--work-size", default=256, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--s3-endpoint", default=None, help="S3 endpoint URL (default: boto3's configuration).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def evaluate(dataset: str, dest: str, models: tuple[str, ...], refine: str, residue: int, limit: int | None,
             work_size: int, device: str, s3_endpoint: str | None, as_json: bool) -> None:
    """Evaluate models on the held-out split of DATASET (made by `colorize dataset`), beside
    the gray and mean-ab baselines; the table, report and side-by-sides go to DEST/eval/<id>/."""
    from colorize_core import ColorizeError
    from colorize_core.datasets import no_listing
    from colorize_core.refine import REFINERS
    from colorize_core.storage import open_location
    from colorize_core.weights import resolve

    methods = [m.strip() for m in refine.split(",") if m.strip()]
    try:
        for m in methods:
            if m not in REFINERS:
                raise click.UsageError(f"--refine {m!r}: use {', '.join(REFINERS)}")
        for m in models:
            resolve(m)
        data = open_location(dataset, s3_endpoint)
        data.check()
        if not data.exists("sources.json"):
            raise no_listing(dataset)
        if not 0 <= residue <= 9:
            raise click.UsageError("--residue must be 0-9")
    except ColorizeError as exc:
        raise click.UsageError(str(exc)) from exc
    prefect_defaults()
    from flows.evaluation import evaluate_colorizer
    from flows.handback import receiving

    with exits_once_stopped(), receiving() as received:
        state = evaluate_colorizer(dataset=dataset, dest=dest, models=list(models), refine=methods,
                                   residue=residue, limit=limit, work_size=work_size, device=device,
                                   s3_endpoint=s3_endpoint, return_state=True)
    summary = _summary_of(state, received, "the evaluation flow")
    if as_json:
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "markdown"}, indent=1))
    else:
        click.echo(summary["markdown"])
        for m in summary["models"]:
            if "error" in m:
                click.echo(f"not evaluated: {m['name']}: {m['error']}", err=True)
        click.echo(f"report: {summary['html']}")
    sys.exit(1 if any("error" in m for m in summary["models"]) else 0)


def main() -> None:
    cli(prog_name="colorize")


if __name__ == "__main__":
    main()
