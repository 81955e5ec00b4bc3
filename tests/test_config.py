"""Settings: defaults, YAML and command-line layers, type and range checks, errors."""
import os
import subprocess
import sys
import time

import pytest

from src.cli import UsageError
from src.config import ConfigError, format_config, load_config, require_dirs, require_files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(REPO_ROOT, "train.py")


def write_yaml(tmp_path, text, name="settings.yaml"):
    """Write ``text`` to a YAML file under tmp_path and return its path as a string."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def config_error(argv):
    """The message of the ConfigError that load_config(argv) raises."""
    with pytest.raises(ConfigError) as caught:
        load_config(argv)
    return str(caught.value)


def test_defaults_are_the_voxceleb_recipe():
    config, _ = load_config([])
    expected = {"in_channels": 80, "channels": 1024, "emb_size": 192, "base_lrate": 1e-6,
                "max_lrate": 1e-4, "weight_decay": 2e-6, "num_epochs": 120, "minibatch_size": 128,
                "keep_checkpoint_max": 10, "length": 1199, "mfa_channels": 1536, "segment_frames": 200,
                "speed_perturb": "0.9,1.0,1.1", "margin_warmup_start": 16, "margin_warmup_end": 32,
                "aam_scale": 32.0, "lr_mode": "triangular2", "aug_clean": 2.0}
    assert {key: getattr(config, key) for key in expected} == expected
    assert type(config.channels) is int and type(config.base_lrate) is float
    # configs/voxceleb.yaml writes the defaults out, and adds AS-norm for its evaluation.
    voxceleb = load_config(["--config", os.path.join(REPO_ROOT, "configs", "voxceleb.yaml")])[0].as_dict()
    differences = {key for key, value in config.as_dict().items() if voxceleb[key] != value}
    assert differences == {"score_norm"}


def test_zoo_config_is_the_zoo_recipe():
    zoo = load_config(["--config", os.path.join(REPO_ROOT, "configs", "zoo.yaml")])[0]
    expected = {"channels": 1024, "num_epochs": 80, "minibatch_size": 100, "keep_checkpoint_max": 80,
                "speed_perturb": "", "margin_warmup_end": 0, "aam_margin": 0.2, "aam_scale": 30.0,
                "lr_mode": "triangular", "max_lrate": 1e-4, "aug_clean": 1.0, "aug_reverb": 1.0,
                "aug_noise": 1.0, "aug_babble": 1.0, "aug_music": 1.0, "score_norm": "none"}
    assert {key: getattr(zoo, key) for key in expected} == expected


def test_yaml_overrides_defaults_and_command_line_overrides_yaml(tmp_path):
    path = write_yaml(tmp_path, "channels: 512\nemb_size: 96\nnum_epochs: 3\n"
                                "base_lrate: 1e-5\nlr_mode: triangular2\n")
    config, _ = load_config(["--config", path, "--emb_size=64", "--num_epochs", "5"])
    assert config.channels == 512          # from the YAML file
    assert config.base_lrate == 1e-5       # PyYAML reads '1e-5' as a string; still a float
    assert config.lr_mode == "triangular2"
    assert config.emb_size == 64           # --key=value beats the file
    assert config.num_epochs == 5          # --key value beats the file
    assert config.mfa_channels == 1536     # untouched default


def test_command_line_alone_and_config_after_overrides(tmp_path):
    path = write_yaml(tmp_path, "channels: 512\n")
    # The command line wins whatever the order of --config and the override.
    config, _ = load_config(["--channels", "256", "--config", path])
    assert config.channels == 256


def test_empty_yaml_keeps_defaults(tmp_path):
    config, _ = load_config(["--config", write_yaml(tmp_path, "# nothing set\n")])
    assert config.as_dict() == load_config([])[0].as_dict()


def test_yaml_integer_for_a_float_setting_becomes_float(tmp_path):
    config, _ = load_config(["--config", write_yaml(tmp_path, "aam_scale: 32\n")])
    assert config.aam_scale == 32.0 and type(config.aam_scale) is float


@pytest.mark.parametrize("word, value", [("true", True), ("false", False), ("yes", True),
                                         ("no", False), ("1", True), ("0", False),
                                         ("TRUE", True), ("No", False)])
def test_bool_words_on_the_command_line(word, value):
    config, _ = load_config([f"--augment={word}"])
    assert config.augment is value


@pytest.mark.parametrize("text, value", [("true", True), ("no", False), ("1", True), ("0", False)])
def test_bool_values_in_yaml(tmp_path, text, value):
    config, _ = load_config(["--config", write_yaml(tmp_path, f"mean_subtraction: {text}\n")])
    assert config.mean_subtraction is value


def test_unknown_yaml_key_names_key_and_file(tmp_path):
    path = write_yaml(tmp_path, "channels: 512\nchanels: 256\n")
    message = config_error(["--config", path])
    assert message.startswith("chanels")
    assert path in message


def test_unknown_command_line_option_names_the_likely_one():
    with pytest.raises(UsageError) as caught:
        load_config(["--chanels=256"])
    assert str(caught.value) == "unknown option --chanels (did you mean --channels?); see --help"


def test_abbreviated_option_is_not_guessed():
    with pytest.raises(UsageError) as caught:
        load_config(["--emb=64"])
    assert str(caught.value).startswith("unknown option --emb (did you mean --emb_size?)")


def test_misspelt_option_on_the_command_line_is_one_error_line():
    completed = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"), "--chanels=64"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines() == [
        "error: unknown option --chanels (did you mean --channels?); see --help"]


@pytest.mark.parametrize("argument, key", [("--channels=abc", "channels"),
                                           ("--channels=2.5", "channels"),
                                           ("--base_lrate=fast", "base_lrate"),
                                           ("--augment=maybe", "augment")])
def test_wrong_type_names_the_key(argument, key):
    message = config_error([argument])
    assert message.startswith(key)
    assert argument.split("=")[1] in message


def test_wrong_type_in_yaml_names_key_and_file(tmp_path):
    path = write_yaml(tmp_path, "augment: 2\n")
    message = config_error(["--config", path])
    assert message.startswith("augment") and path in message


@pytest.mark.parametrize("argv, key", [
    (["--base_lrate=-1e-5"], "base_lrate"),
    (["--max_lrate=0"], "max_lrate"),
    (["--base_lrate=1e-3"], "base_lrate"),                   # above max_lrate 1e-4
    (["--lr_mode=exp_range"], "lr_mode"),
    (["--device_target=TPU"], "device_target"),
    (["--aug_noise=-1"], "aug_noise"),
    (["--segment_frames=0"], "segment_frames"),
    (["--segment_frames=1"], "segment_frames"),              # all zero once centred
    (["--threshold=nan"], "threshold"),
    (["--max_lrate=inf"], "max_lrate"),
    (["--weight_decay=inf"], "weight_decay"),
    (["--noise_snr=15,0"], "noise_snr"),                     # low above high
    (["--babble_snr=13"], "babble_snr"),                     # one number
    (["--babble_talkers=0,3"], "babble_talkers"),            # no talker
    (["--babble_talkers=2.5,3"], "babble_talkers"),          # not a whole number
], ids=lambda item: " ".join(item) if isinstance(item, list) else item)
def test_impossible_values_name_the_key(argv, key):
    assert config_error(argv).startswith(key)


@pytest.mark.parametrize("argv", [["--channels=1020"],            # 1020 % 8 = 4
                                  ["--channels=512", "--scale=3"]])  # 512 % 3 = 2
def test_settings_the_model_cannot_use_name_the_key(argv):
    """Model-specific checks belong to the model and run before it is built."""
    from src.model import build_embedding_network, check_model_settings

    config, _ = load_config(argv)
    for check in (check_model_settings, lambda settings: build_embedding_network(settings, "shifted")):
        with pytest.raises(ConfigError) as caught:
            check(config)
        assert str(caught.value).startswith("channels")


def test_unknown_model_or_head_names_the_choices():
    from src.model import build_embedding_network, build_head

    config, _ = load_config(["--model=resnet_999"])
    with pytest.raises(ConfigError, match=r"^model: 'resnet_999' is not one of .*ecapa_tdnn"):
        build_embedding_network(config, "shifted")
    config, _ = load_config(["--head=softmax_999"])
    with pytest.raises(ConfigError, match=r"^head: 'softmax_999' is not one of aam"):
        build_head(config, 4)


ALL_WEIGHTS_ZERO = [f"--{key}=0" for key in
                    ("aug_clean", "aug_reverb", "aug_noise", "aug_babble", "aug_music")]


def test_all_augmentation_weights_zero_is_rejected_while_augmenting():
    message = config_error(ALL_WEIGHTS_ZERO)
    assert message.startswith("aug_clean") and "augment" in message
    # Without augmentation the weights are unused, so zeros are fine.
    config, _ = load_config(ALL_WEIGHTS_ZERO + ["--augment=false"])
    assert config.augment is False


def test_require_files_and_dirs(tmp_path):
    existing_file = tmp_path / "eval.txt"
    existing_file.write_text("1 a.wav b.wav\n")
    missing = str(tmp_path / "missing.txt")
    config, _ = load_config([f"--eval_list={existing_file}", f"--eval_path={tmp_path}",
                             f"--train_list={missing}", f"--train_path={missing}"])
    require_files(config, "eval_list")
    require_dirs(config, "eval_path")
    with pytest.raises(ConfigError) as caught:
        require_files(config, "eval_list", "train_list")
    assert str(caught.value).startswith("train_list") and missing in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        require_dirs(config, "train_path")
    assert str(caught.value).startswith("train_path") and missing in str(caught.value)
    # A folder is not a file and a file is not a folder.
    with pytest.raises(ConfigError, match=f"^eval_path: '{tmp_path}' is a folder, expected a file$"):
        require_files(config, "eval_path")
    with pytest.raises(ConfigError, match="eval_list"):
        require_dirs(config, "eval_list")


def test_empty_path_setting_is_reported_as_missing():
    config, _ = load_config(["--model_path="])
    with pytest.raises(ConfigError, match="^model_path"):
        require_files(config, "model_path")


def test_script_options_are_returned_separately():
    def add_arguments(parser):
        parser.add_argument("--verify", nargs=2, default=None)
        parser.add_argument("--limit", type=int, default=7)

    config, options = load_config(["--verify", "a.wav", "b.wav", "--channels=512"],
                                  add_arguments=add_arguments)
    assert options.verify == ["a.wav", "b.wav"]
    assert options.limit == 7
    assert config.channels == 512
    assert not hasattr(config, "verify") and "limit" not in config.as_dict()
    assert not hasattr(options, "channels")


@pytest.mark.parametrize("text, expected", [
    ("channels: [512\nemb_size: 96\n", "not valid YAML"),
    ("- channels\n- 512\n", "mapping"),
    ("just a sentence\n", "mapping"),
])
def test_malformed_yaml_gives_one_line_error(tmp_path, text, expected):
    path = write_yaml(tmp_path, text)
    message = config_error(["--config", path])
    assert expected in message and path in message
    assert "\n" not in message


def test_yaml_that_is_not_utf8_gives_one_line_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("file_name: \xe9cap\xe0\n".encode("latin-1"))
    message = config_error(["--config", str(path)])
    assert str(path) in message and "UTF-8" in message and "\n" not in message


def test_a_key_given_twice_in_yaml_is_refused_with_both_lines(tmp_path):
    path = write_yaml(tmp_path, "channels: 512\nemb_size: 64\n\nchannels: 256\n")
    assert config_error(["--config", path]) == f"config: {path}:4: channels is given twice (first on line 1)"
    assert config_error(["--config", write_yaml(tmp_path, "max_lrate: .inf\n")]).startswith(
        "max_lrate (from ")


def test_missing_yaml_file_is_named(tmp_path):
    path = str(tmp_path / "nowhere.yaml")
    message = config_error(["--config", path])
    assert message.startswith("config") and path in message


def test_format_config_lists_every_setting():
    config, _ = load_config(["--channels=512"])
    lines = format_config(config).splitlines()
    assert len(lines) == len(config.as_dict())
    assert any(line.split(":")[0].strip() == "channels" and line.endswith(": 512")
               for line in lines)


def run_train(arguments, cwd):
    """Run train.py with the test's interpreter; return the CompletedProcess."""
    return subprocess.run([sys.executable, TRAIN_SCRIPT, *arguments], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_train_script_reports_a_bad_setting_in_one_line():
    result = run_train(["--channels=abc"], cwd=REPO_ROOT)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: channels")
    assert "Traceback" not in result.stderr


def test_train_script_help_works_from_any_folder(tmp_path):
    result = run_train(["--help"], cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "--channels" in result.stdout and "--config" in result.stdout


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(REPO_ROOT, "configs"))))
def test_every_shipped_config_loads(name):
    config, _ = load_config(["--config", os.path.join(REPO_ROOT, "configs", name)])
    assert config.channels % config.scale == 0


def test_run_main_turns_sigterm_into_its_line_and_status_143():
    program = ("import os, signal, time\n"
               "from src.cli import run_main\n"
               "def main():\n"
               "    os.kill(os.getpid(), signal.SIGTERM)\n"
               "    time.sleep(5)\n"
               "run_main(main)\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 143 and result.stderr.strip().splitlines()[-1] == "interrupted by SIGTERM"


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    # 9 levels of 9 aliases: 9^9 strings if expanded; refused on the composed nodes in well under a second.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]" for level in range(1, 9)]
    path = write_yaml(tmp_path, "\n".join(lines) + "\nchannels: *a8\n")
    start = time.perf_counter()
    assert config_error(["--config", path]) == f"config: {path}:1: 'a0' holds a sequence; a setting takes one value"
    assert time.perf_counter() - start < 0.5
    scalar_alias = write_yaml(tmp_path, "channels: &c 64\nmfa_channels: *c\n")
    config, _ = load_config(["--config", scalar_alias])
    assert (config.channels, config.mfa_channels) == (64, 64)


@pytest.mark.parametrize("text, message", [
    ("? [a, b]\n: 1\n", "config: {path}:1: a key must be a setting's name, not a sequence"),
    ("? {a: 1}\n: 1\n", "config: {path}:1: a key must be a setting's name, not a mapping"),
    ("channels:\n  deep: 1\n", "config: {path}:2: 'channels' holds a mapping; a setting takes one value"),
    ("[1, 2]\n", "config: {path} must hold a mapping of key: value"),
])
def test_nested_or_unhashable_yaml_is_one_line(tmp_path, text, message):
    path = write_yaml(tmp_path, text)
    assert config_error(["--config", path]) == message.format(path=path)


def test_long_values_and_files_are_cut_in_messages(tmp_path):
    message = config_error(["--config", write_yaml(tmp_path, f"channels: {'9x' * 50000}\n")])
    assert message.startswith("channels (from ") and "... (100002 characters)" in message and len(message) < 400
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (1 << 20) + "\n")
    assert config_error(["--config", str(huge)]) == (
        f"config: {huge} is {(1 << 20) + 3} bytes, more than the 1048576 a settings file may have")
