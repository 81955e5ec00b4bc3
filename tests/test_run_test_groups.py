"""scripts/run_test_groups.py: how the test files are dealt to groups and ordered within them."""
from fixtures import load_program

groups = load_program("scripts/run_test_groups.py")


def test_files_are_balanced_and_the_longest_of_two_groups_run_apart():
    durations = {"test_a.py": 10, "test_b.py": 8, "test_c.py": 3, "test_d.py": 1}
    files = [f"tests/{name}" for name in sorted(durations)]
    # Longest first onto the lighter group: a -> 0, b -> 1, c -> 1 (8 < 10), d -> 0 (10 < 11).
    assert groups.make_groups(files, durations, 2) == [
        (11, ["tests/test_a.py", "tests/test_d.py"]),  # longest first
        (11, ["tests/test_c.py", "tests/test_b.py"]),  # shortest first
    ]


def test_an_unmeasured_file_counts_as_the_median_and_empty_groups_are_dropped():
    durations = {"test_a.py": 2, "test_b.py": 4, "test_c.py": 9}
    dealt = groups.make_groups(["tests/test_new.py", "tests/test_a.py"], durations, 3)
    assert dealt == [(4, ["tests/test_new.py"]), (2, ["tests/test_a.py"])]


def test_durations_are_read_back_as_written(tmp_path):
    path = tmp_path / "durations.txt"
    groups.write_durations({"test_a.py": 12.4, "test_b.py": 130.6}, path=str(path))
    assert path.read_text().splitlines()[1:] == ["131 test_b.py", "12 test_a.py"]
    assert groups.read_durations(str(path)) == {"test_b.py": 131.0, "test_a.py": 12.0}
