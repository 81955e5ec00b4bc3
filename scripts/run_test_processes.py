"""Run the test suite as several pytest processes side by side that share out its test files.

    python scripts/run_test_processes.py [--processes N] [--write_durations] [pytest options]

Every process (default: the CPU count, at most 2) is given all files of tests/, ordered by
the seconds each took in a measured run (tests/durations.txt: '<seconds> <file>' lines; a
file not listed counts as the median). A process runs a file's tests only when it is the
first to claim the file (tests/conftest.py, through the folder named by TEST_FILE_CLAIMS);
the others pass over it. Process 0 meets the files longest first; process k of n starts
where the files before make up about k/n of the measured seconds, goes on longest first to
the shortest, then turns back to the files it skipped. So the longest files (end-to-end runs,
some starting several processes that compile graphs) run one at a time, beside shorter ones,
and every process ends on short files, within seconds of the others, however this run's
seconds differ from the measured ones. Each process writes its own temporary folder and log;
the logs are printed in process order when all have ended, and the status is 0 only when
every process passed. ``--write_durations`` writes the seconds each file took in this run to
tests/durations.txt (from each process's JUnit report). Separate processes rather than
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
CLAIMS_VARIABLE = "TEST_FILE_CLAIMS"


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


def file_orders(files, durations, count):
    """The order in which each of ``count`` processes meets ``files``: [[file, ...], ...].

    All orders are the files longest first (ties by name), process k's rotated to start
    where the seconds of the files before come nearest to k/count of the total, with the
    files before its start appended in reverse, nearest first.
    """
    default = statistics.median(durations.values()) if durations else 1.0
    weights = {name: durations.get(os.path.basename(name), default) for name in files}
    longest_first = sorted(files, key=lambda name: (-weights[name], name))
    before = [sum(weights[name] for name in longest_first[:index]) for index in range(len(files))]
    orders = []
    for number in range(count):
        target = sum(weights.values()) * number / count
        start = min(range(len(files)), key=lambda index: (abs(before[index] - target), index))
        orders.append(longest_first[start:] + longest_first[:start][::-1])
    return orders


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
        handle.write("# Seconds each test file took in a measured run (scripts/run_test_processes.py "
                     "--write_durations); the processes meet the files in this order.\n")
        for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
            handle.write(f"{value:.0f} {name}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--write_durations", action="store_true", help="record this run's seconds per file")
    args, pytest_options = parser.parse_known_args()
    files = sorted(os.path.join("tests", name) for name in os.listdir(os.path.join(ROOT, "tests"))
                   if name.startswith("test_") and name.endswith(".py"))
    orders = file_orders(files, read_durations(), max(1, args.processes))
    scratch = tempfile.mkdtemp(prefix="test_processes_")
    claims = os.path.join(scratch, "claims")
    os.mkdir(claims)
    environment = dict(os.environ, **{CLAIMS_VARIABLE: claims})
    running = []
    start = time.perf_counter()
    for number, names in enumerate(orders):
        log_path, junit_path = (os.path.join(scratch, f"process{number}.{kind}") for kind in ("log", "xml"))
        command = [sys.executable, "-m", "pytest", "-q", "--basetemp", os.path.join(scratch, f"tmp{number}"),
                   "--junitxml", junit_path, *pytest_options, *names]
        with open(log_path, "w", encoding="utf-8") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
        running.append((process, log_path, junit_path))
    statuses = [process.wait() for process, _, _ in running]
    for number, ((_, log_path, junit_path), status) in enumerate(zip(running, statuses)):
        ran = file_seconds([junit_path]) if os.path.isfile(junit_path) else {}
        print(f"===== process {number} (status {status}): {len(ran)} files, {sum(ran.values()):.0f} s of tests =====")
        with open(log_path, encoding="utf-8") as log:
            sys.stdout.write(log.read())
    failed = [number for number, status in enumerate(statuses) if status]
    if args.write_durations:
        write_durations(file_seconds(junit for _, _, junit in running))
    print(f"{len(orders)} processes in {time.perf_counter() - start:.0f} s: "
          f"{'all passed' if not failed else 'failed: process ' + ', '.join(map(str, failed))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
