"""Run the test suite as several pytest processes, one per group of test files, side by side.

    python scripts/run_test_groups.py [--processes N] [--write_durations] [pytest options]

The files of tests/ are dealt to N groups (default: the CPU count, at most 2), longest first
onto the group with the least work, by the seconds each file took in a measured run
(tests/durations.txt: '<seconds> <file>' lines; a file not listed counts as the median).
Even-numbered groups run their files longest first, odd-numbered ones shortest first, so the
longest files of two groups (the end-to-end runs, some starting several processes that
compile graphs) do not run at the same time and overload the cores.
Each group is one ``python -m pytest -q`` process with its own temporary folder and log;
the logs are printed in group order when all have ended, and the status is 0 only when
every group passed. ``--write_durations`` writes the seconds each file took in this run to
tests/durations.txt (from each group's JUnit report). Separate processes rather than
pytest-xdist workers: the training tests fork data workers and launch ranks, which must not
share a worker's channel to its controller.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATIONS = os.path.join(ROOT, "tests", "durations.txt")


def read_durations(path=DURATIONS):
    """{test file name: seconds} of the measured run, or {} without the file."""
    if not os.path.isfile(path):
        return {}
    durations = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip() and not line.startswith("#"):
                seconds, name = line.split()
                durations[name] = float(seconds)
    return durations


def make_groups(files, durations, count):
    """``files`` dealt to ``count`` groups, longest first onto the least loaded: [(seconds, files)].

    Each group's files are in the order they run: longest first in groups 0, 2, ...,
    shortest first in groups 1, 3, ... (ties by name).
    """
    default = statistics.median(durations.values()) if durations else 1.0
    weights = {name: durations.get(os.path.basename(name), default) for name in files}
    groups = [[0.0, []] for _ in range(count)]
    for name in sorted(files, key=lambda name: (-weights[name], name)):
        lightest = min(groups, key=lambda group: group[0])
        lightest[0] += weights[name]
        lightest[1].append(name)
    ordered = []
    for number, (seconds, names) in enumerate(group for group in groups if group[1]):
        sign = -1 if number % 2 == 0 else 1
        ordered.append((seconds, sorted(names, key=lambda name: (sign * weights[name], name))))
    return ordered


def file_seconds(junit_paths):
    """{test file name: seconds} summed over the test cases of JUnit reports."""
    seconds = {}
    for path in junit_paths:
        for case in ElementTree.parse(path).iter("testcase"):
            parts = case.get("classname", "").split(".")  # tests.test_file[.Class]
            name = next((part for part in parts if part.startswith("test_")), parts[-1]) + ".py"
            seconds[name] = seconds.get(name, 0.0) + float(case.get("time", 0.0))
    return seconds


def write_durations(seconds, path=DURATIONS):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# Seconds each test file took in a measured run (scripts/run_test_groups.py "
                     "--write_durations); the groups are balanced by them.\n")
        for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
            handle.write(f"{value:.0f} {name}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--write_durations", action="store_true", help="record this run's seconds per file")
    args, pytest_options = parser.parse_known_args()
    files = sorted(os.path.join("tests", name) for name in os.listdir(os.path.join(ROOT, "tests"))
                   if name.startswith("test_") and name.endswith(".py"))
    groups = make_groups(files, read_durations(), max(1, args.processes))
    scratch = tempfile.mkdtemp(prefix="test_groups_")
    running = []
    start = time.perf_counter()
    for number, (seconds, names) in enumerate(groups):
        log_path = os.path.join(scratch, f"group{number}.log")
        command = [sys.executable, "-m", "pytest", "-q", "--basetemp", os.path.join(scratch, f"tmp{number}"),
                   "--junitxml", os.path.join(scratch, f"group{number}.xml"), *pytest_options, *names]
        with open(log_path, "w", encoding="utf-8") as log:
            running.append((subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log_path))
        print(f"group {number}: {len(names)} files, about {seconds:.0f} s measured", flush=True)
    statuses = [process.wait() for process, _ in running]
    for number, ((_, log_path), status) in enumerate(zip(running, statuses)):
        print(f"===== group {number} (status {status}) =====")
        with open(log_path, encoding="utf-8") as log:
            sys.stdout.write(log.read())
    failed = [number for number, status in enumerate(statuses) if status]
    if args.write_durations:
        write_durations(file_seconds(os.path.join(scratch, f"group{number}.xml") for number in range(len(groups))))
    print(f"{len(groups)} groups in {time.perf_counter() - start:.0f} s: "
          f"{'all passed' if not failed else 'failed: group ' + ', '.join(map(str, failed))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
