"""scripts/run_test_processes.py and the file claims of conftest.py: which process runs which test file."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

from fixtures import REPO_ROOT, load_program

runner = load_program("scripts/run_test_processes.py")


def test_processes_start_on_shares_of_the_measured_seconds_and_go_longest_first():
    durations = {"test_a.py": 10, "test_b.py": 8, "test_c.py": 3}
    files = ["tests/test_new.py", "tests/test_c.py", "tests/test_a.py", "tests/test_b.py"]
    # test_new.py is not measured: it counts as the median, 8; ties go by name. Longest first:
    # a (seconds before it: 0), b (10), new (18), c (26) of 29. Process 1 of 2 starts nearest
    # 14.5, at new; process 1 of 3 nearest 9.67, at b; process 2 of 3 nearest 19.33, at new.
    a, b, new, c = "tests/test_a.py", "tests/test_b.py", "tests/test_new.py", "tests/test_c.py"
    assert runner.file_orders(files, durations, 2) == [[a, b, new, c], [new, c, b, a]]
    assert runner.file_orders(files, durations, 3) == [[a, b, new, c], [b, new, c, a], [new, c, b, a]]


def test_a_process_runs_only_the_files_it_claims_first(tmp_path):
    # Another process has claimed test_report.py: this one runs test_lr_schedule.py alone.
    claims = tmp_path / "claims"
    (claims / "test_report.py").mkdir(parents=True)
    junit = tmp_path / "report.xml"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", str(junit),
         "tests/test_report.py", "tests/test_lr_schedule.py"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, **{runner.CLAIMS_VARIABLE: str(claims)}))
    assert completed.returncode == 0, completed.stdout[-2000:]
    files = {case.get("classname") for case in ElementTree.parse(junit).iter("testcase")}
    assert files == {"tests.test_lr_schedule"}
    assert sorted(os.listdir(claims)) == ["test_lr_schedule.py", "test_report.py"]
    assert runner.file_seconds([junit]).keys() == {"test_lr_schedule.py"}


def test_durations_are_read_back_as_written(tmp_path):
    path = tmp_path / "durations.txt"
    runner.write_durations({"test_a.py": 12.4, "test_b.py": 130.6}, path=str(path))
    assert path.read_text().splitlines()[1:] == ["131 test_b.py", "12 test_a.py"]
    assert runner.read_durations(str(path)) == {"test_b.py": 131.0, "test_a.py": 12.0}
