"""The fault-injection suite's case list: what was tried against which command, and what each
case gets. docs/reliability.md is rendered from it (`python -m tests.faults.report`) and a test
compares the two, so the document cannot drift from the suite; every case here is claimed by a
test (`@pytest.mark.fault(id)`), and every fault test claims a case, checked at collection.

Option cases are not written by hand: every command (a module under the project's packages
with a `build_parser()`) is found, and every option of its parser is walked with the bad
values its type declares (clikit.types), a value outside its choices, a missing value, or an
explicit value given to a flag. An option added later is walked the same way.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMAND_PACKAGES = ("runtime", "build_engine", "benchmarks", "pspnet", "calib", "segdata", "artefact",
                    "serving")
PROG_NAMES = {"runtime.cli": "pspnet-rt", "build_engine.cli": "python -m build_engine"}
# where the collection hook (conftest) leaves {test module: case ids its tests claim}; here, not in
# the conftest, so that the hook and test_report.py see the very same key
CLAIMED = pytest.StashKey[dict]()


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    command: str
    tried: str
    gets: str


# --------------------------------------------------------------------------- the commands
def command_modules() -> list[str]:
    """Every module that defines build_parser(): found by reading the source, not importing."""
    found = []
    for package in COMMAND_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "def build_parser(" in path.read_text(encoding="utf-8"):
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def prog(module: str) -> str:
    return PROG_NAMES.get(module, f"python -m {module}")


def parser_of(module: str) -> argparse.ArgumentParser:
    return importlib.import_module(module).build_parser()


@dataclass(frozen=True)
class OptionCase:
    module: str
    flag: str  # the option string, or the positional's dest
    positional: bool
    values: tuple[str | None, ...]  # None = the option given without a value
    why: str  # where the values come from

    @property
    def id(self) -> str:
        return f"option:{self.module}:{self.flag}"


def _good(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    return getattr(action.type, "good", "x")


def base_argv(parser: argparse.ArgumentParser, leave_out: argparse.Action | None = None,
              bad: str | None = None) -> list[str]:
    """The smallest argv that satisfies the parser's required arguments (with good values); with
    `bad`, that value stands at the place of positional `leave_out` (positionals bind in order)."""
    argv: list[str] = []
    positionals = [a for a in parser._actions if not a.option_strings]
    last = positionals.index(leave_out) if bad is not None and leave_out in positionals else -1
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action is leave_out:
            if bad is not None:
                argv.append(bad)
            continue
        if not action.option_strings:
            if action.nargs not in ("?", "*") or positionals.index(action) < last:
                argv.append(_good(action))
        elif action.required:
            argv.append(f"{action.option_strings[-1]}={_good(action)}")
    return argv


def unclassified(parser: argparse.ArgumentParser) -> list[str]:
    """Options whose values nobody checks: no choices and no domain-aware type."""
    from clikit.types import OptionType

    bad = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.nargs == 0:
            continue
        if not action.choices and not isinstance(action.type, OptionType):
            bad.append((action.option_strings or [action.dest])[-1])
    return bad


def _flag(action: argparse.Action) -> str:
    """What argparse's error names: the option string, or a positional's metavar (else its dest)."""
    if action.option_strings:
        return action.option_strings[-1]
    return action.metavar if isinstance(action.metavar, str) else action.dest


def option_cases() -> list[OptionCase]:
    from clikit.types import OptionType

    cases = []
    for module in command_modules():
        for action in parser_of(module)._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            positional = not action.option_strings
            flag = _flag(action)
            if action.nargs == 0:
                values, why = ("x",), "an explicit value given to a flag"
            else:
                values, why = (), ""
                if action.choices:
                    values, why = ("no-such-choice", ""), "values outside its choices"
                if isinstance(action.type, OptionType):
                    values, why = action.type.bad, f"bad values of its type ({action.type.domain})"
                if not positional:
                    values = (*values, None)  # the option with no value at all
            cases.append(OptionCase(module, flag, positional, tuple(values), why))
    return cases


def option_argv(case: OptionCase, value: str | None) -> list[str]:
    parser = parser_of(case.module)
    action = next(a for a in parser._actions if _flag(a) == case.flag)
    if case.positional:
        return base_argv(parser, leave_out=action, bad=value or "")
    argv = base_argv(parser)
    if value is None:
        return [*argv, case.flag]
    return [*argv, f"{case.flag}={value}"]


# -------------------------------------------------------------------- the hand-made cases
RT, BE = "pspnet-rt", "python -m build_engine"
EXIT2 = "exit 2, one line naming it and the fix, before any model work"

CASES: list[Case] = [
    # the five reproductions of issue 13
    Case("repro-1-full-disk-video", "reproductions", RT,
         "--output on a tmpfs with 36 KB free; and the encoder left to hit ENOSPC in its trailer "
         "(ffmpeg then exits 0)",
         "exit 2 before the run (under 256 KB free); a video that is not whole at close (frames counted) is "
         "removed, WriteError (exit 1), and the file that was at that path stays"),
    Case("repro-1-full-disk-mid-run", "reproductions", RT,
         "video + masks + stats on a tmpfs that fills up during the run",
         "exit 1, one line; the summary says 'processed', not 'written'; every output left there is "
         "whole (the video plays, PNGs decode, JSONL parses), no temp file left"),
    Case("repro-2-ov-cache", "reproductions", RT,
         "bytes flipped / truncated / emptied / replaced by a folder, a symlink or a hard link to a user's "
         "file in ov_cache blobs; the ownership record garbage; a user's notes and a file named like a "
         "blob there; one of our blobs that will not import",
         "never imported and never deleted (a warning names it): compiled afresh, the new blob written "
         "beside it and recorded, masks equal a clean run's; only our own blob that will not import is "
         "removed"),
    Case("repro-3-failed-rebuild", "reproductions", BE,
         "rebuild whose accuracy gate fails (--max-miou-drop 0) over a good artefact",
         "exit 1, one line; the previous manifest and model files are byte-identical and load"),
    Case("repro-3-interrupted-rebuild", "reproductions", BE,
         "SIGINT during a --force rebuild over a good artefact",
         "exit 130; previous artefact byte-identical, no temp folder left"),
    Case("repro-3-crash-between-renames", "reproductions", BE,
         "a build killed after moving its model files in, before its manifest (simulated by the "
         "commit steps themselves), then a stale work folder from a SIGKILLed build",
         "the old manifest still verifies against its own files; the next build removes the orphans"),
    Case("repro-4-timeout-0", "reproductions", RT,
         "--timeout 0 (and -1, nan) on a stream", "exit 2 at parse time (0 meant 'no timeout')"),
    Case("repro-4-signal-during-open", "reproductions", RT,
         "SIGTERM / SIGINT while blocked opening a stream with no sender (--timeout 60)",
         "exit 143 / 130 within 3 s, one line"),
    Case("repro-5-http-mp4", "reproductions", RT,
         "an mp4 served by http.server (no ranges), with and without --max-frames 20",
         "read like a file: every frame once, in order, no reconnects, exit 0; 20 frames with "
         "--max-frames 20"),
    Case("repro-5-http-live", "reproductions", RT,
         "an MJPEG (multipart/x-mixed-replace) feed and a live HLS playlist over HTTP",
         "treated as live streams (newest frame, drops counted)"),
    # also seen in issue 13
    Case("seen-accepted-values", "options", "pspnet-rt, build_engine", "--fps 0, --reconnect -1, "
         "--max-miou-drop -1", "exit 2 at parse time, one line naming the option"),
    Case("options-walk", "options", "every command", "every option of every parser: a type that knows "
         "its domain (or choices) is required", "a test fails naming an option nobody checks"),
    Case("seen-manifest-field", "files", RT, "a manifest field hand-edited to a wrong type or value "
         "(every field of the schema, e.g. input_size 'abc')", EXIT2 + " (the field)"),
    Case("seen-timeout-duration", "network", RT, "a refused rtsp/tcp/http connection",
         "exit 2, one line with the real time it took (not 'no video within 10 s')"),
    # files the tools read
    Case("file-manifest", "files", RT, "manifest missing, empty, truncated, binary garbage, a folder, "
         "a JSON list, another format", EXIT2),
    Case("file-model", "files", RT, "model file missing, empty, truncated, bytes flipped; .bin missing "
         "or flipped", EXIT2 + " (sha256 mismatch, rebuild command)"),
    Case("file-video", "files", RT, "--video missing, empty .mp4, a text file named .mp4, a truncated "
         "mp4, a folder without images, one unreadable image", EXIT2 + "; an mp4 with its index in front "
         "cut in half: the frames it has, exit 0, the summary says where it ended"),
    Case("file-weights", "files", BE, "--weights empty, truncated, garbage (.pth and .h5), a JSON file, "
         "a pickle that runs code, a folder", EXIT2 + " (before any export), output folder untouched"),
    Case("file-calib-data", "files", BE, "--calib-data / --eval-data missing path, folder without images",
         EXIT2 + " (before any export)"),
    Case("file-calib-cache", "files", BE, "calibration cache truncated / garbage / empty",
         "calibrated again (warning), the INT8 model is built"),
    Case("file-clip-cache", "files", RT, "the demo clip cache truncated / garbage",
         "rendered again (warning), exit 0"),
    # outputs
    Case("out-read-only", "outputs", RT, "--output, --masks, --stats, --summary-json on a read-only tmpfs",
         EXIT2),
    Case("out-full", "outputs", RT, "--masks and --stats on a full tmpfs (0 bytes free)",
         "exit 2 before any model work, one line (not even the output's lock file fits); an older stats "
         "file stays as it was, no temp file"),
    Case("out-clash", "outputs", RT, "--output = --stats, --stats = --summary-json, --output = the --video "
         "file, --stats = the --engine manifest, --summary-json = its model file, --masks = the --video "
         "folder", EXIT2 + "; inputs untouched"),
    Case("out-rtsp", "outputs", RT, "--output rtsp:// on a port in use, on an address that is not this "
         "machine's, given twice, with an empty password", EXIT2 + " before any model work"),
    Case("out-failed-run-keeps-old", "outputs", RT, "a run that fails (disk full on --masks) over existing "
         "--output and --stats files", "exit 1; the old files stay, the new whole ones are kept as "
         "NAME.incomplete.EXT"),
    Case("out-build-read-only", "outputs", BE, "--output on a read-only tmpfs, or an existing file",
         EXIT2 + " (before any export)"),
    Case("out-build-full", "outputs", BE, "--force rebuild into a tmpfs too small for the build",
         "exit 1, one line; the previous artefact intact, no temp folder"),
    Case("out-bench-read-only", "outputs", "python -m benchmarks.latency", "--out on a read-only tmpfs",
         EXIT2),
    # signals
    Case("sig-rt-startup", "signals", RT, "SIGHUP / SIGTERM while pspnet-rt builds its default artefact",
         "exit 129 / 143, one line, no output and no temp folder in the artefact cache"),
    Case("sig-rt-run", "signals", RT, "SIGHUP during the run (SIGINT, SIGTERM: tests/test_runtime_cli.py)",
         "exit 129; video plays with every frame of the stats, masks and stats whole"),
    Case("sig-rt-repeated", "signals", RT, "SIGTERM twice within 50 ms during the run (the second lands "
         "in shutdown)", "exit 143; outputs whole, as after one"),
    Case("sig-rt-abort", "signals", RT, "SIGTERM three times (with --summary-json: its lock file too)",
         "exit 143 at once; temp files removed, the "
         "files that existed before the run untouched"),
    Case("sig-build", "signals", BE, "SIGINT / SIGTERM / SIGHUP during export of a --force rebuild",
         "exit 130 / 143 / 129, one line; previous artefact byte-identical, no temp folder"),
    Case("sig-build-repeated", "signals", BE, "SIGTERM twice during export",
         "exit 143; the clean-up is not interrupted: no temp folder"),
    Case("sig-calibration", "signals", BE, "SIGTERM during INT8 calibration",
         "exit 143; no temp folder, no half-written calibration cache"),
    # network
    Case("net-refused", "network", RT, "rtsp://, tcp://, http:// to a closed port",
         "exit 2 at once, one line saying after how long (0.0 s), not the --timeout"),
    Case("net-stall-open", "network", RT, "a server that accepts and never answers (http, rtsp), "
         "udp with no sender, --timeout 1", "exit 2 within ~timeout, one line"),
    Case("net-http-errors", "network", RT, "HTTP 404 for the --video URL",
         "exit 2, one line with the status"),
    Case("net-rtsp-refusals", "network", RT,
         "a real RTSP camera (gst-rtsp-server) asked for a wrong path, with a wrong password (Basic and "
         "Digest), with no credentials, over a transport it does not offer (--rtsp-transport udp to a "
         "TCP-only camera), --timeout 10",
         "exit 2 at once, one line naming what the camera said (404, 401, 461) and the fix; the password "
         "appears nowhere in the output"),
    Case("net-rtsp-lost", "network", RT,
         "a real RTSP camera killed mid-run (SIGKILL of its server), restarted, then killed for good "
         "(--reconnect 5)", "reconnects and goes on, the frames sent while it was down counted as lost; "
         "then exit 1, one line ('was lost: 5 reconnect attempt(s) failed'), outputs whole"),
    Case("net-remote-file-cut", "network", RT,
         "an mp4 over HTTP whose server closes the connection, or goes silent, half way (--timeout 2)",
         "exit 1, one line: the frames that came are written whole, the run says where it ended"),
    # several streams, the live view, Triton
    Case("streams-bad-input", "services", RT, "several --video: two streams named alike, one source missing, "
         "a per-stream output (X-NAME.mp4, DIR/NAME) that is another output or another stream's input file",
         EXIT2 + "; inputs untouched, nothing written"),
    Case("streams-signal", "services", RT, "SIGTERM / SIGHUP during a two-stream run",
         "exit 143 / 129; each stream's video plays with every frame of its stats lines, masks whole, "
         "no temp file"),
    Case("streams-full-disk", "services", RT, "two streams whose --masks tmpfs fills up mid-run",
         "exit 1, one line; the summary says 'processed', not 'written'; every output left is whole "
         "(on the full disk and off it), no temp file"),
    Case("serve-port-taken", "services", RT, "--serve on a port another process holds (one and two streams)",
         EXIT2 + " (the port); nothing written"),
    Case("serve-signal", "services", RT, "SIGTERM while a viewer holds /stream.mjpg open and stopped reading",
         "exit 143 within seconds (a viewer never holds up the shutdown); the video plays, the port is "
         "let go"),
    Case("serve-viewers-reset", "services", RT, "viewers of every endpoint that reset the connection "
         "mid-response, and requests cut in their first line", "the run goes on: exit 0, every frame "
         "written, no error line"),
    Case("triton-unreachable", "services", RT, "--engine triton:// to a closed port, or to a server that "
         "accepts and never answers (--timeout 2)", "exit 2 within the timeout, one line naming the server "
         "and --timeout; nothing written"),
    Case("triton-signal-connect", "services", RT, "SIGTERM / SIGINT / SIGHUP while connecting (two streams) "
         "to a Triton that accepts and never answers (--timeout 60)", "exit 143 / 130 / 129 within "
         "seconds, one line, nothing written"),
    Case("triton-server-dies", "services", RT, "the Triton server SIGKILLed, or SIGSTOPped (accepts, never "
         "answers), mid-run under two streams (--reconnect 1, --timeout 2)",
         "exit 1 within seconds, one error line ('lost', after the reconnect warnings); each stream's video "
         "plays with every frame of its stats, masks whole"),
    Case("triton-repo-output", "services", "python -m build_engine[.triton_repo]", "--triton-repo on a "
         "read-only tmpfs; a rewrite of a repository on a tmpfs that fills up", EXIT2 + " (before any "
         "export); on the full disk exit 1, one line, the model folders there byte-identical, no staged "
         "folder"),
    Case("triton-server-run-signal", "services", "python -m serving.triton_server", "SIGTERM / SIGINT to "
         "`run` (the server in the foreground)", "exit 143 / 130 (it used to exit 0), one line; the "
         "tritonserver is stopped with it"),
    # issue 21, the build side: what we delete or replace, and what an artefact must prove
    Case("own-build-output", "trust", BE, "--output holding a user's `server.202612061325.log`, "
         "`IMG.0123456789ab.jpg`, a file at the exact versioned name the build writes (other bytes), our "
         "own model file edited by hand, hidden `.X.build-XXXXXXXX` folders (empty, with photos, with a "
         "marker copied from a real work folder), a symlink into another folder",
         "exit 0; every one of them byte-identical (the new model files go beside a file that is not "
         "ours: NAME.<sha12>-1.*); only the build's own files are added"),
    Case("own-build-manifest-name", "trust", BE, "NAME.json that is not our manifest: a user JSON with a "
         "`model_file` key naming their photo, garbage bytes, a symlink to a system file, a folder, a "
         "FIFO; for --precision auto too, a --stop-after output name and the ownership record's name "
         "held by a user file; a user's TensorRT timing.cache",
         EXIT2 + " (before any export); that file and what it names byte-identical; the timing cache "
         "is neither read nor replaced (the build goes on without it)"),
    Case("own-build-dead-writers", "trust", BE, "what a SIGKILLed build leaves (its marked work folder, a "
         "model file it noted and moved in, never committed), beside look-alikes that are not ours",
         "the next build removes exactly the provably ours leftovers, whatever the names say"),
    Case("own-triton-repo", "trust", "python -m build_engine[.triton_repo]", "--triton-repo DIR where "
         "DIR/<model>/ holds the user's version 2/ and notes, one of our files edited, a symlink to a "
         "folder; <model> is a file; leftover `.NAME.old.*` and staged folders (ours and look-alikes)",
         EXIT2 + " (before any build); everything there byte-identical; a folder wholly ours is replaced "
         "and our leftovers removed"),
    Case("integrity-hashes", "trust", RT, "model_sha256 blanked or removed, companion_files emptied or "
         "without the .bin (OpenVINO), then the model file or .bin tampered; through pspnet-rt, the "
         "repository writer and the Python API; in a Triton model folder we wrote: the model file "
         "flipped, config.pbtxt edited, the manifest copy removed",
         EXIT2 + " (the field, and the rebuild command); the server tool refuses to serve the changed "
         "folder (names the file)"),
    Case("integrity-contract", "trust", RT, "a manifest that does not describe its model: 2 or 20 classes "
         "for 19 (palette to match), input_size 97x192 or 192x96 for 96x192, 8193x8193 and "
         "100000x100000, dynamic_shape flipped, a logits_name the model lacks; OpenVINO and ONNX "
         "Runtime; also published with --triton-repo",
         EXIT2 + " (at load: nothing written, nothing allocated for a huge size)"),
    Case("degenerate-model", "trust", BE, "weights with NaN in a convolution, Inf in a BatchNorm variance, "
         "NaN in the classifier bias; a classifier that paints one class over every pixel (each a real "
         "build); finite weights whose logits overflow to Inf (the verify step's check on the model's "
         "real PyTorch output)",
         "exit 1, one line naming the cause (NaN/Inf weights, NaN/Inf logits, one class); nothing "
         "written to --output"),
    Case("build-usage-upfront", "trust", BE, "--input-size 8193x8193 and 100000x100000 (tried to allocate "
         "30 GB), --dynamic with int8 / fp16, --backend tensorrt without TensorRT, --stop-after with "
         "--triton-repo, --engine with build options, --triton-* without --triton-repo, calibration or "
         "gate options with --precision fp32 (calibration ones with fp16), --workspace-mb for a CPU backend",
         EXIT2 + " (in seconds, --output not created)"),
    Case("manifest-nesting", "trust", "pspnet-rt, build_engine", "a manifest of JSON nested 100 000 deep "
         "(--engine of pspnet-rt, --engine of the repository writer, NAME.json in a build's --output), a "
         "--classes label-set file and a calibration ranges cache nested as deep",
         "exit 2, one line (no RecursionError); the cache is calibrated again"),
    Case("fix-is-a-command", "trust", "every command", "every message text in the build, artefact, "
         "calibration and model code (raise, fail, warnings)",
         "none names a Python call as the fix (a test reads them all)"),
    Case("triton-server-pid-file", "services", "python -m serving.triton_server", "stop with a PID file that "
         "is garbage, empty, PID 1, or the PID of a process that is not a tritonserver; start with two "
         "ports alike", "exit 2, one line naming the file (the process is never signalled); a PID "
         "that is gone: exit 0, the stale file removed"),
    # issue 21, the run side: outputs that are not files, runs that write at once, the live view's
    # visitors, secrets in source URLs, what can be refused before the model loads
    Case("out-not-a-file", "trust-run", RT, "--output, --stats, --summary-json on /dev/null, /dev/full, a "
         "symlink to /dev/null, /dev/stdout, a FIFO with a reader, a pipe as /dev/fd/N (bash's >(...)); "
         "/dev/urandom, /dev/loop-control, a block device, a unix socket, stdin, a closed descriptor, a "
         "FIFO nobody reads; a symlink to a regular file",
         "in place, never renamed over: /dev/null stays the device, the FIFO's reader gets every stats line "
         "and an MPEG-TS video that plays, /dev/stdout carries the stats alone (the summary goes to stderr); "
         + EXIT2 + " for the others, the device untouched; a FIFO without a reader: exit 2 after the "
         "reader wait, never a hang; through a symlink the file is replaced and the link stays a link"),
    Case("out-concurrent", "trust-run", RT + ", python -m benchmarks.latency", "two runs started at once on "
         "one --output and --stats; a second run on the --output, --masks, --stats, --summary-json or --bag "
         "of a running one, on a per-stream X-NAME.mp4, through a symlink alias; benchmarks' --out held by "
         "another run; a run SIGKILLed mid-write, then run again; a file of someone else where the lock goes",
         "one run writes, the other gets exit 2 before any model work and one line naming the holder's PID; "
         "the file is whole (its frames = its stats lines); after a SIGKILL the next run removes the temp "
         "files the dead run's lock recorded, nothing else; a foreign lock-named file is refused and left "
         "byte-identical"),
    Case("out-usage-up-front", "trust-run", RT, "--output .webm / .gif / .ogv / .png / .txt; names whose "
         "temp name passes NAME_MAX (--output, --stats, --summary-json, a per-stream video); a glob that "
         "matches only text files; --show or --benchmark with two streams; --benchmark on a live stream; a "
         "mask name taken by a folder", EXIT2 + " (the container asked of ffmpeg itself)"),
    Case("source-odd-names", "trust-run", RT, "an image named frame[1].png beside frame1.png, a video named "
         "clip?.mp4, a folder shots[1]/ read with shots[1]/*.png",
         "the file or folder that exists, not a glob: exactly its frames"),
    Case("stdout-closed", "trust-run", RT, "stdout closed (>&-), or its reader gone before the summary, with "
         "--summary-json", "exit 0, the summary JSON whole, no BrokenPipeError or traceback"),
    Case("serve-host", "trust-run", RT + " --serve", "Host headers evil.example (with a port), "
         "127.0.0.1.evil.example, localhost., 10.0.0.1 on a 127.0.0.1 bind, empty, malformed, two of them, "
         "none in HTTP/1.1, on every endpoint; --serve-allow-host names; a 0.0.0.0 bind",
         "421 (400 for the malformed ones) before the token is checked or a slot is taken; the server's "
         "own addresses, localhost and the allowed names 200"),
    Case("serve-slow-heads", "trust-run", RT + " --serve", "40 sockets trickling one byte every 4 s "
         "(reconnecting when dropped), 40 whole requests with a wrong token and 200 idle connections, while "
         "viewers with the token (4 slots) ask for /stats and the MJPEG stream",
         "every viewer served within seconds all along; a head is cut off after 5 s (408); a wrong token "
         "gets 401 without a slot; the idle flood evicts its own oldest connections, threads stay bounded"),
    Case("secrets-in-urls", "trust-run", RT, "passwords and tokens in --video URLs (rtsp://:PW@, "
         "rtsp://u:p@PW@, u:pa/ss@, ?password=, ?token=, X-Amz-Signature=, #access_token=, a one-slash typo, "
         "an unknown scheme, a refused stream, an HTTP 404, an mp4 served with basic auth) and "
         "triton://u:PW@, with -v",
         "the secret in no output: the printed summary, stderr (logs included), --summary-json, --stats, "
         "the live page's title, /stats, /metrics (which names the artefact by file name, no absolute "
         "path); one function for all (runtime.naming.redact_source)"),
    Case("triton-server-outputs", "trust-run", "python -m serving.triton_server", "start with --pid-file "
         "/dev/null, a FIFO, a file holding notes, the PID file of a running server; --log a FIFO",
         EXIT2 + " (before any server starts); the file untouched"),
    Case("foxglove-visitors", "trust-sweep", RT + " --foxglove", "WebSocket upgrades with Origin "
         "https://evil.example, null, app.foxglove.dev.evil.example; Host evil.example, "
         "127.0.0.1.evil.example, 10.0.0.1 on a loopback bind, none, malformed, two; --foxglove-token "
         "missing, wrong, in the query, as a Bearer header; --serve-allow-host and --foxglove-allow-origin "
         "names; 80 sockets trickling heads while a viewer connects; a head that never ends; the flags "
         "without --foxglove",
         "403 for a foreign web page, 421/400 for a foreign or bad Host (before the token), 401 without the "
         "token; the Foxglove app, a script, localhost and the named ones get through (101); the viewer "
         "gets frames within seconds while the oldest pending heads are dropped, an unfinished head 408 "
         "after 5 s; the SDK's own server listens on a private loopback address only; exit 2 for the flags "
         "alone"),
    Case("secrets-every-command",
         "trust-sweep",
         "every command",
         "a password in a URL given to commands that never asked for redaction (segdata.split), in a log "
         "line, an exception with -v; --calib-data / --eval-data URLs whose server refuses; a study "
         "database URL (postgresql://u:PW@, ?sslpassword=, a driver quoting the password alone, percent-"
         "encoded); a benchmark's JSON and Markdown and a manifest naming a URL with a password",
         "the secret in no output: the CLI kit redacts every line of every command with the one function "
         "(which moved to clikit.redaction; runtime.naming re-exports it), result writers redact every "
         "string they write; the calibration URL is refused before any export (exit 2, about a second, "
         "--output not created)"),
    Case("size-bounds", "trust-sweep", RT, "--input-size 8193x8193, 100000x100000, 8193x1; frames of "
         "8193x64, 64x100000, 30000x30000 for a dynamic-shape artefact; the default build refused by its "
         "cache folder (a user's file at the ownership record's name)",
         "exit 2 at parse time for the size; a frame past 8192 a side refused with one line (exit 1 "
         "mid-run; nothing allocated); the default build's refusal is one pspnet-rt line naming "
         "PSPNET_RT_CACHE and --engine, not the builder's flags; the user's file untouched"),
    Case("integrity-load-what-was-checked", "trust-sweep", RT, "the model file (and OpenVINO's .bin) "
         "replaced by other bytes right after their sha256 was checked (ONNX Runtime, OpenVINO; the "
         "streaming backend and the runner)",
         "the bytes that were checked are the ones loaded (ORT InferenceSession(bytes), OpenVINO "
         "read_model(xml, bin) and import_model(blob), TensorRT deserialize(bytes)): masks equal a clean "
         "run's; the swapped file is refused at the next load"),
    Case("triton-contract",
         "trust-sweep",
         RT + " --engine triton://",
         "Triton models (the python variant of the demo, edited by hand) whose labels output is declared "
         "1x48x96, whose carried manifest names a logits output the model lacks, or whose declared logits"
         " say 20 classes for the manifest's 19; and the model as written",
         "exit 2 at connect, one line naming the model and the field (the contract of "
         "runtime.backends.contract, held to the server's metadata for the model), nothing written; the "
         "model as written runs, exit 0"),
    Case("own-folder-outputs",
         "trust-sweep",
         "pspnet-rt --masks, python -m segdata.split, python -m pspnet.train, python -m pspnet.search",
         "a masks folder holding a user's 000000.png, a symlink at a mask's name, a mask edited by hand "
         "after a run; a split folder holding a curated val.txt; a training --out holding a user's "
         "best.pth; a search's reports and trial checkpoints (clean-up by content)",
         "exit 2, one line naming the file, before any work (the files byte-identical, links still "
         "links); over files the tool itself wrote (noted with their sha256 in the folder's ownership "
         "record) a rerun replaces them, exit 0"),
    Case("out-not-a-file-everywhere",
         "trust-sweep",
         "every command (the one whole-file writer)",
         "whole-file writes (manifests, reports, checkpoints, records) aimed at a FIFO, a unix socket, a "
         "folder, a character device made like /dev/null, and symlinks to each; a symlink to a regular "
         "file; pspnet.train --export-weights /dev/null, a FIFO, a link to one",
         "refused (never renamed over: the thing there keeps its inode and kind); through a link to a "
         "file, the file is replaced and the link stays; --export-weights: exit 2, one line, before any "
         "training"),
    Case("concurrent-folder-writers",
         "trust-sweep",
         "python -m pspnet.train",
         "a second training into the --out another is writing (its lock held by another process)",
         "exit 2 at once, one line naming --out and the other training; nothing written there"),
    Case("usage-late-sweep",
         "trust-sweep",
         "python -m pspnet.train, python -m build_engine, benchmarks",
         "pspnet.train --init a FIFO, a text file, a JSON file (read after the data set was made); build "
         "--calib-data/--eval-data URLs that refuse (see secrets-every-command); a benchmark's refused "
         "--video (OpenCV's own warnings on stderr)",
         "exit 2 in seconds, one line (OpenCV/FFmpeg's native log quiet without -v, in every command that"
         " opens sources)"),
    # issue 21, the third sweep: the features merged after the second (confidence, RTSP out, ROS
    # bags, label-set files, TF checkpoints, train/search, the Python API)
    Case("output-is-a-url", "trust-sweep-3",
         "every command's file and folder outputs (pspnet-rt, build_engine, pspnet.train, pspnet.search)",
         "--output rtsps://u:PW@ and rtmp://, --stats http://u:PW@, --summary-json https://...?token=, "
         "--masks udp://, --confidence srt://?passphrase=, --bag s3://u:PW@, build --output "
         "https://u:PW@, train --out file://, search --out sftp://; the same as RunOptions fields from "
         "Python",
         EXIT2 + " at parse time, the URL redacted, nothing created (they were written as local folders "
         "`rtsps:/u:PW@host/seg`, the password kept on disk, exit 0); a path that exists as written is "
         "used; rtsp:// --output is still served"),
    Case("bag-input-not-a-file", "trust-sweep-3", RT + " --video BAG",
         "an .mcap that is a FIFO (alone and with #TOPIC); a rosbag2 folder holding a FIFO .mcap (the run "
         "hung for ever), a link to /dev/zero, a broken link, a link loop",
         EXIT2 + " (was: a hang, or exit 1 with a raw NotADirectoryError)"),
    Case("rtsp-out-credentials", "trust-sweep-3", RT + " --output rtsp://USER:PW@",
         "--output rtsp://viewer:PW@... served with Basic+Digest, Basic, Digest (the helper crashed at "
         "start on every one: PyGObject types the auth methods as an enum); clients with the right, a "
         "wrong and no password; the helper dying of an exception",
         "served: the right credentials get H.264, the others are refused; a helper crash is exit 1, one "
         "line (its exception, not its traceback's frames; was exit 2 with them), the password in no "
         "message"),
    Case("label-set-hostile", "trust-sweep-3", BE + " --classes FILE",
         "class names holding a newline and HTML, a terminal escape, a NUL, 10 000 characters; a label-set "
         "file padded past 1 MiB and one with a 10 MB name (read whole before); the Python API's LabelSet",
         EXIT2 + " (one line, nothing built); names with spaces, commas, accents and other scripts accepted"),
    Case("tf-checkpoint-hostile", "trust-sweep-3", BE + " --weights DIR",
         "a TF checkpoint folder holding a FIFO named *.index, the FIFO named by its `checkpoint` file, a "
         "link to a FIFO (each blocked the build for ever); an index whose header claims 10^9 or 0 data "
         "files (a list of 10^9 paths was made)",
         EXIT2 + " in seconds, one line, nothing written"),
    Case("refused-run-no-folders", "trust-sweep-3", RT,
         "a source refused when the streams open (after the outputs were checked) with --confidence, "
         "--masks, --bag, --stats, --output, --summary-json in new nested folders; two streams, the second "
         "refused; a new folder inside a user's folder; an existing empty folder",
         "exit 2, one line; the folders the run made are removed again (only if still empty: rmdir), the "
         "user's folders and files stay (was: empty folders left behind by every failed run)"),
]


def all_case_ids() -> set[str]:
    return {c.id for c in CASES} | {c.id for c in option_cases()}
