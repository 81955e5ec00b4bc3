"""Every setting of the project, with defaults, types and checks.

Settings come from three layers, later ones winning: the defaults below, a YAML file
given with ``--config FILE.yaml``, and ``--key=value`` / ``--key value`` on the command
line. Unknown keys, values of the wrong type and impossible values stop the program
with a one-line :class:`ConfigError` that names the key.
"""
import argparse
import math
import os
import sys
from dataclasses import dataclass

import yaml

from src.cli import ArgumentParser
from src.errors import InputError


class ConfigError(InputError):
    """A setting that is unknown, of the wrong type, or impossible."""


@dataclass(frozen=True)
class Setting:
    """One configuration key: default value, Python type, help text and an optional check.

    ``check`` returns an error message (str) for an impossible value, or None.
    ``choices`` restricts string settings to a fixed set. ``words`` are strings accepted
    as they are besides values of ``kind`` (e.g. 'auto' for an integer found at run time).
    """
    default: object
    kind: type
    help: str
    check: object = None
    choices: tuple = ()
    words: tuple = ()


def _positive(value):
    return None if value > 0 else "must be > 0"


def _non_negative(value):
    return None if value >= 0 else "must be >= 0"


def _at_least_two_frames(value):
    # Features are centred on the crop's own mean, which leaves a single frame all zero.
    return None if value >= 2 else "must be >= 2 (the features of a one-frame crop are all zero)"


def _probability(value):
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def parse_speed_factors(text):
    """Speed factors of ``speed_perturb`` ('0.9,1.0,1.1') as a tuple of floats, 1.0 first.

    '' means (1.0,), no perturbation. Raises ValueError for a malformed list, a factor
    outside (0.5, 2), a repeated factor, or a list without 1.0.
    """
    try:
        factors = [float(word) for word in str(text).replace(",", " ").split()] or [1.0]
    except ValueError:
        raise ValueError("expected comma-separated speed factors such as '0.9,1.0,1.1'") from None
    if not all(0.5 < factor < 2.0 for factor in factors) or len(set(factors)) != len(factors):
        raise ValueError("factors must be distinct and between 0.5 and 2")
    if 1.0 not in factors:
        raise ValueError("the factors must include 1.0 (the original speed)")
    return (1.0, *(factor for factor in factors if factor != 1.0))


def parse_range(text):
    """A 'low,high' setting (e.g. noise_snr '0,15') as two floats; ValueError unless low <= high."""
    try:
        low, high = (float(word) for word in str(text).split(","))
    except ValueError:
        raise ValueError("expected two numbers 'low,high'") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError("expected finite numbers with low <= high")
    return low, high


def parse_talker_range(text):
    """A 'low,high' count range (babble_talkers) as two floats holding whole numbers >= 1."""
    low, high = parse_range(text)
    if low < 1 or low != int(low) or high != int(high):
        raise ValueError("expected whole numbers >= 1")
    return low, high


def _parses(parse):
    """A Setting check: the message of the ValueError that ``parse(value)`` raises, or None."""
    def check(value):
        try:
            parse(value)
        except ValueError as error:
            return str(error)
        return None
    return check


SETTINGS = {
    # Device and run
    "device_target": Setting("auto", str, "Device: auto picks Ascend, then GPU, then CPU",
                             choices=("auto", "Ascend", "GPU", "CPU")),
    "device_id": Setting(0, int, "Device index for a standalone run", _non_negative),
    "seed": Setting(1234, int, "Seed for weights, shuffling, crops and augmentation", _non_negative),
    "conv_impl": Setting("auto", str,
                         "Convolution kernels: 'shifted' (time-shifted copies + 1x1, fast on CPU), "
                         "'native' (Conv1d, for Ascend/GPU), 'auto' picks by device",
                         choices=("auto", "native", "shifted")),
    "amp_level": Setting("auto", str, "Mixed precision level; auto = O2 on Ascend/GPU, O0 on CPU",
                         choices=("auto", "O0", "O1", "O2", "O3")),
    "cpu_kernels": Setting("auto", str,
                           "CPU: run TDNN blocks and products on the custom oneDNN kernels (src/kernels; "
                           "built by install.sh, need AVX512-BF16) with float32 or bf16 products "
                           "(bfloat16 inputs, float32 sums); none = MindSpore's own ops; auto = float32 "
                           "where the kernels can run, none elsewhere",
                           choices=("auto", "none", "float32", "bf16")),
    "num_threads": Setting(0, int, "CPU intra-op threads; 0 = all cores", _non_negative),
    # Network
    "model": Setting("ecapa_tdnn", str, "Embedding network, by its registered name (src/model/)"),
    "head": Setting("aam", str, "Margin head of training, by its registered name (src/model/)"),
    "features": Setting("zoo", str, "Front end: zoo (this project's log-mel), speechbrain (SpeechBrain's Fbank, "
                        "sentence mean removed), kaldi (Kaldi fbank as WeSpeaker computes it, mean removed); "
                        "a model imported from a library needs that library's",
                        choices=("zoo", "speechbrain", "kaldi")),
    "in_channels": Setting(80, int, "Log-mel bands fed to the network", _positive),
    "channels": Setting(1024, int, "Channels of the SE-Res2Blocks", _positive),
    "mfa_channels": Setting(1536, int, "Channels after multi-layer feature aggregation", _positive),
    "attention_channels": Setting(128, int, "Hidden channels of attentive statistics pooling", _positive),
    "se_channels": Setting(128, int, "Bottleneck channels of squeeze-excitation", _positive),
    "scale": Setting(8, int, "Res2Net scale (channel groups) of each block", _positive),
    "emb_size": Setting(192, int, "Speaker embedding dimension", _positive),
    "padding": Setting("zeros", str, "Frames past the ends of kernel-k convolutions: zeros, or reflect "
                       "(mirrored frames, as SpeechBrain's convolutions pad)", choices=("zeros", "reflect")),
    "variance_floor": Setting(1e-4, float, "Smallest variance of the pooling statistics (SpeechBrain: 1e-12, "
                              "WeSpeaker: 1e-7)", _positive),
    "global_context": Setting(True, bool, "Attentive pooling sees the utterance's mean and std (ecapa_tdnn "
                              "always; wespeaker_ecapa_tdnn as WeSpeaker's _GLOB models)"),
    "embedding_norm": Setting(True, bool, "Batch norm after the embedding layer, as in the paper "
                              "(SpeechBrain's and WeSpeaker's models have none)"),
    "class_num": Setting("auto", int, "Classes of the margin head; auto = the speakers in train_list times "
                         "the speed_perturb factors; a number must equal that", _positive, words=("auto",)),
    "aam_margin": Setting(0.2, float, "Additive angular margin m (radians); the final one with a warm-up",
                          _non_negative),
    "aam_margin_start": Setting(0.0, float, "AAM margin before the margin warm-up", _non_negative),
    "margin_warmup_start": Setting(16, int, "Epoch at which the margin starts rising from aam_margin_start",
                                   _non_negative),
    "margin_warmup_end": Setting(32, int, "Epoch from which the margin is aam_margin (exponential rise "
                                 "in between, per step); 0 = no warm-up, the margin is always aam_margin",
                                 _non_negative),
    "aam_scale": Setting(32.0, float, "Logit scale s of AAM-softmax", _positive),
    # Data
    "train_list": Setting("dataset/Voxceleb2/train.txt", str, "Training list '<spk> <spk>/<video>/<n>.wav'"),
    "train_path": Setting("dataset/Voxceleb2/train/wav", str, "Folder the train_list paths are relative to"),
    "eval_list": Setting("dataset/Voxceleb2/eval.txt", str, "Trial list '<1|0> <utt_a> <utt_b>'"),
    "eval_path": Setting("dataset/Voxceleb2/eval/wav", str, "Folder the eval_list paths are relative to"),
    "enroll_list": Setting("", str, "Enrollment list '<speaker> <utt> [<utt> ...]' (paths relative to "
                           "enroll_path); when set, eval_list holds '<speaker> <test utt> <target|nontarget>' "
                           "trials against the enrolled speakers"),
    "enroll_path": Setting("", str, "Folder the enroll_list paths are relative to; '' = eval_path"),
    "musan_path": Setting("dataset/Others/musan_split", str, "MUSAN cut into chunks; '' disables"),
    "rir_path": Setting("dataset/Others/RIRS_NOISES/simulated_rirs", str, "Room impulse responses; '' disables"),
    "segment_frames": Setting(200, int, "Frames (10 ms each) of the random training crop", _at_least_two_frames),
    "speed_perturb": Setting("0.9,1.0,1.1", str, "Speed factors, e.g. '0.9,1.0,1.1': each perturbed speed of a speaker "
                             "is a class of its own; '' or '1.0' = off", _parses(parse_speed_factors)),
    "speed_perturb_prob": Setting(0.667, float, "Share of samples played at a perturbed speed (drawn "
                                  "uniformly among the factors other than 1.0)", _probability),
    "valid_list": Setting("", str, "Trial list scored during training (cosine EER); '' = no validation"),
    "valid_path": Setting("", str, "Folder the valid_list paths are relative to"),
    "augment": Setting(True, bool, "Apply MUSAN/RIR augmentation during training"),
    "aug_clean": Setting(2.0, float, "Relative weight of leaving a sample clean", _non_negative),
    "aug_reverb": Setting(1.0, float, "Relative weight of RIR reverberation", _non_negative),
    "aug_noise": Setting(1.0, float, "Relative weight of MUSAN noise (0-15 dB)", _non_negative),
    "aug_babble": Setting(0.5, float, "Relative weight of MUSAN babble (3-8 talkers, 13-20 dB)", _non_negative),
    "aug_music": Setting(0.5, float, "Relative weight of MUSAN music (5-15 dB)", _non_negative),
    "noise_snr": Setting("0,15", str, "SNR range 'low,high' (dB) of MUSAN noise", _parses(parse_range)),
    "babble_snr": Setting("13,20", str, "SNR range 'low,high' (dB) of each babble talker",
                          _parses(parse_range)),
    "babble_talkers": Setting("3,8", str, "Range 'low,high' of the number of babble talkers",
                              _parses(parse_talker_range)),
    "music_snr": Setting("5,15", str, "SNR range 'low,high' (dB) of MUSAN music", _parses(parse_range)),
    "num_workers": Setting(2, int, "Data-loading workers per device (threads, or processes with "
                           "worker_processes)", _positive),
    "check_train_files": Setting(True, bool, "Check at start-up that every train_list file exists; "
                                 "false finds missing files when first drawn (counted by max_bad_audio)"),
    "worker_processes": Setting(False, bool, "Run the num_workers data workers as processes (fork) instead "
                                "of threads: no interpreter lock, for accelerator-rate loading"),
    "data_timeout": Setting(300, int, "Seconds training waits for one batch before it stops with an error "
                            "naming the data workers' state (a stopped or hung worker); 0 = no limit",
                            _non_negative),
    "max_bad_audio": Setting(10, int, "Unreadable training files skipped before training stops",
                             _non_negative),
    # Optimisation
    "num_epochs": Setting(120, int, "Training epochs", _positive),
    "minibatch_size": Setting(128, int, "Global batch size (split over devices)", _positive),
    "base_lrate": Setting(1e-6, float, "Lowest learning rate of the cycle", _positive),
    "max_lrate": Setting(1e-4, float, "Highest learning rate of the cycle", _positive),
    "lr_step_size": Setting(0, int, "Steps per half-cycle of the cyclic LR; 0 = two epochs",
                            _non_negative),
    "lr_mode": Setting("triangular2", str, "Cyclic LR policy", choices=("triangular", "triangular2")),
    "weight_decay": Setting(2e-6, float, "L2 weight decay of Adam", _non_negative),
    "grad_clip": Setting(5.0, float, "Clip the global gradient norm to this; 0 disables", _non_negative),
    "loss_scale": Setting(65536.0, float, "Initial dynamic loss scale when amp is on", _positive),
    # Checkpoints and logs
    "ckpt_save_dir": Setting("./ckpt/", str, "Folder for checkpoints"),
    "keep_checkpoint_max": Setting(10, int, "Checkpoints kept (oldest deleted first)", _positive),
    "save_checkpoint_steps": Setting(0, int, "Also save every this many steps; 0 = per epoch only",
                                     _non_negative),
    "resume": Setting("", str, "'' starts fresh; 'auto' resumes the checkpoint that ckpt_save_dir/last "
                      "names; or a checkpoint path"),
    "overwrite_checkpoints": Setting(False, bool, "Let a fresh run delete the checkpoints another run left "
                                     "in ckpt_save_dir (otherwise it stops)"),
    "log_interval": Setting(20, int, "Log a line every this many steps", _positive),
    "tensorboard": Setting(True, bool, "Write TensorBoard event files of the logged figures to "
                           "<ckpt_save_dir>/tensorboard/ (metrics.jsonl and training_curves.png are always written)"),
    "max_steps": Setting(0, int, "Stop after this many steps in total; 0 = run all epochs", _non_negative),
    "init_from": Setting("", str, "Start a fresh run from the network and head weights of this checkpoint "
                         "(new optimizer and schedule; a head of other classes, or none, starts fresh); "
                         "'' = random initialisation"),
    "valid_interval": Setting(1, int, "Score valid_list every this many epochs", _positive),
    # Evaluation and inference
    "model_path": Setting("", str, "Checkpoint (training or exported) used by eval.py"),
    "eval_output_dir": Setting("./eval_output", str, "Folder for scores, plots and the cache"),
    "embedding_cache": Setting(True, bool, "Reuse embeddings cached in eval_output_dir"),
    "score_norm": Setting("none", str, "Score normalisation", choices=("none", "asnorm")),
    "mean_subtraction": Setting(False, bool, "Subtract the cohort mean embedding before cosine"),
    "cohort_list": Setting("", str, "Training-style list for the cohort; '' = train_list"),
    "cohort_size": Setting(6000, int, "Cohort utterances (one per listed utterance, spread over speakers)",
                           _positive),
    "top_n": Setting(300, int, "Cohort scores per side used by AS-norm", _positive),
    "threshold": Setting(0.5, float, "Raw score at or above which --verify accepts when no "
                         "calibration_file is given (an uncalibrated decision)"),
    "score_calibration": Setting("none", str, "Fit a calibration of the scores to LLRs on the calibration "
                                 "list and apply it (after AS-norm): linear (score) or qmf (score, "
                                 "durations, embedding norms)", choices=("none", "linear", "qmf")),
    "calibration_file": Setting("", str, "Calibration JSON (eval_output_dir/calibration.json of a fit) "
                                "applied by eval.py, postprocess.py and --verify"),
    "cal_list": Setting("", str, "Calibration trial list '<1|0> <utt_a> <utt_b>'; '' = built from "
                        "train_list (cal_trials speaker-balanced pairs)"),
    "cal_path": Setting("", str, "Folder the cal_list paths are relative to; '' = train_path"),
    "cal_trials": Setting(4000, int, "Trials of the automatic calibration list (half target)",
                          lambda value: None if value >= 2 else "must be >= 2"),
    "cal_enroll_utterances": Setting(3, int, "Recordings of each speaker enrolled in the automatic calibration "
                                     "list of an enroll_list evaluation", _positive),
    "cal_prior": Setting(0.5, float, "Target prior of the calibration fit",
                         lambda value: None if 0 < value < 1 else "must lie strictly between 0 and 1"),
    "p_target": Setting(0.01, float, "Target prior of the --verify decision with a calibration_file "
                        "(accept when LLR >= log((1 - p_target) / p_target))",
                        lambda value: None if 0 < value < 1 else "must lie strictly between 0 and 1"),
    "target_fa_rate": Setting(0.0, float, "If > 0, --verify accepts at the LLR threshold giving this "
                              "false-accept rate on the calibration list instead of p_target",
                              lambda value: None if 0 <= value < 1 else "must be >= 0 and < 1"),
    "length": Setting(1199, int, "Frames of the fixed-length exported model input", _positive),
    "file_name": Setting("ecapatdnn", str, "Exported model file name, without extension"),
    "file_format": Setting("MINDIR", str, "Export format", choices=("MINDIR", "AIR", "ONNX")),
    "fold_batch_norm": Setting(True, bool, "eval.py extracts with batch norm folded into the linear layers "
                               "(same embeddings, faster)"),
    "extraction_graphs": Setting("dynamic", str, "eval.py's full-length graphs: dynamic = one graph with a "
                                 "dynamic time axis; buckets = static graphs of padded bucket lengths "
                                 "with a frame mask (same embeddings; one compilation per bucket)",
                                 choices=("dynamic", "buckets")),
    "windows": Setting("first", str, "Fixed-length inputs of an utterance: first = its first length frames, "
                       "all = windows of length frames covering it (embeddings averaged)",
                       choices=("first", "all")),
    "window_hop": Setting(0, int, "Frames between the starts of windows (windows: all); 0 = length // 2",
                          _non_negative),
}

_TRUE_WORDS = {"true", "yes", "1", "on"}
_FALSE_WORDS = {"false", "no", "0", "off"}


class Config:
    """Attribute access to the validated settings (``config.channels``)."""

    def __init__(self, values):
        self.__dict__.update(values)

    def as_dict(self):
        """The settings as a plain dict, in declaration order."""
        return dict(self.__dict__)

    def __repr__(self):
        return "\n".join(f"{key}: {value!r}" for key, value in self.__dict__.items())


def _coerce(key, value, source):
    """Convert ``value`` (from YAML or the command line) to the type of ``key``."""
    setting = SETTINGS[key]
    kind = setting.kind
    where = f"{key} (from {source})"
    if isinstance(value, str) and value in setting.words:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        word = str(value).lower() if isinstance(value, (str, int)) else None
        if word in _TRUE_WORDS | _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise ConfigError(f"{where}: expected true/false, got {short_repr(value)}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {short_repr(value)}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value), 10)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {short_repr(value)}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {short_repr(value)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {short_repr(value)}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {short_repr(value)}")
        return number
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where}: expected a string, got {short_repr(value)}")
    return str(value)


def _check(values):
    """Range and consistency checks over the merged settings."""
    for key, value in values.items():
        setting = SETTINGS[key]
        if setting.choices and value not in setting.choices:
            raise ConfigError(f"{key}: {short_repr(value)} is not one of {', '.join(setting.choices)}")
        if setting.check is not None and value not in setting.words:
            problem = setting.check(value)
            if problem:
                raise ConfigError(f"{key}: {short_repr(value)} {problem}")
    if values["margin_warmup_end"] and values["margin_warmup_end"] < values["margin_warmup_start"]:
        raise ConfigError(f"margin_warmup_end: {values['margin_warmup_end']} is before margin_warmup_start "
                          f"{values['margin_warmup_start']}")
    if values["base_lrate"] > values["max_lrate"]:
        raise ConfigError(f"base_lrate: {values['base_lrate']} is above max_lrate {values['max_lrate']}")
    weights = ("aug_clean", "aug_reverb", "aug_noise", "aug_babble", "aug_music")
    if values["augment"] and not any(values[key] > 0 for key in weights):
        raise ConfigError("aug_clean: all augmentation weights are 0 while augment is true")


# A settings file is a few kilobytes; a longer one is a mistake (or an attack) to stop before parsing.
MAX_SETTINGS_FILE_BYTES = 1 << 20


def short_repr(value, limit=80):
    """``repr(value)`` cut to ``limit`` characters, so that no error message can grow with its input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class _SettingsLoader(yaml.SafeLoader):
    """A YAML loader of a flat mapping of settings: keys and values are plain values (an alias to one
    too), checked on the composed nodes before any value is built, so that a file of nested aliases
    is refused at once instead of being expanded; a key given twice is refused with both lines (YAML
    would keep the last silently)."""

    def settings(self):
        root = self.get_single_node()
        if root is None:
            return {}
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError(f"config: {self.name} must hold a mapping of key: value")
        first_lines = {}
        for key_node, value_node in root.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(f"config: {self.name}:{line}: a key must be a setting's name, not a "
                                  f"{key_node.id}")
            key = self.construct_object(key_node)
            if not isinstance(value_node, yaml.ScalarNode):
                raise ConfigError(f"config: {self.name}:{value_node.start_mark.line + 1}: {short_repr(key)} holds "
                                  f"a {value_node.id}; a setting takes one value")
            if key in first_lines:
                raise ConfigError(f"config: {self.name}:{line}: {key} is given twice (first on line "
                                  f"{first_lines[key]})")
            first_lines[key] = line
        return self.construct_document(root)


def read_yaml_settings(path):
    """The {setting: value} mapping of the YAML file ``path``; ConfigError naming the file (and line)
    for a missing, oversized, non-UTF-8 or malformed file, a nested value or a key given twice."""
    if not os.path.isfile(path):
        raise ConfigError(f"config: file {path} not found")
    size = os.path.getsize(path)
    if size > MAX_SETTINGS_FILE_BYTES:
        raise ConfigError(f"config: {path} is {size} bytes, more than the {MAX_SETTINGS_FILE_BYTES} a settings "
                          "file may have")
    try:
        with open(path, encoding="utf-8") as handle:
            loader = _SettingsLoader(handle)
            loader.name = path
            try:
                return loader.settings()
            finally:
                loader.dispose()
    except yaml.YAMLError as error:
        raise ConfigError(f"config: {path} is not valid YAML ({error})".replace("\n", " ")) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config: {path} is not UTF-8 text ({error})") from None


def build_parser(description, add_arguments=None):
    """An argparse parser with ``--config``, every setting as ``--key``, and script extras."""
    parser = ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", default="", help="YAML file of settings")
    if add_arguments is not None:
        add_arguments(parser)
    group = parser.add_argument_group("settings (also accepted in the YAML file)")
    for key, setting in SETTINGS.items():
        metavar = "|".join((setting.kind.__name__.upper(), *setting.words))
        group.add_argument(f"--{key}", default=argparse.SUPPRESS, metavar=metavar,
                           help=f"{setting.help} (default: {setting.default!r})")
    return parser


def load_config(argv=None, description="ECAPA-TDNN", add_arguments=None):
    """Merge defaults, ``--config`` YAML and command-line overrides into a checked Config.

    ``add_arguments(parser)`` may add script-specific options; their values are returned
    as the second element. Returns ``(config, script_args)``. Raises ConfigError.
    """
    parser = build_parser(description, add_arguments)
    arguments = parser.parse_args(sys.argv[1:] if argv is None else argv)
    values = {key: setting.default for key, setting in SETTINGS.items()}
    if arguments.config:
        for key, value in read_yaml_settings(arguments.config).items():
            if key not in SETTINGS:
                raise ConfigError(f"{str(key)[:80]}: unknown setting in {arguments.config}")
            values[key] = _coerce(key, value, arguments.config)
    for key in SETTINGS:
        if key in vars(arguments):
            values[key] = _coerce(key, getattr(arguments, key), "command line")
    _check(values)
    for key in SETTINGS:
        vars(arguments).pop(key, None)
    return Config(values), arguments


def config_of(values, source="the given settings"):
    """A checked Config of the defaults with ``values`` ({setting: value}) in their place; ConfigError
    naming ``source`` for an unknown setting or a bad value."""
    merged = {key: setting.default for key, setting in SETTINGS.items()}
    for key, value in values.items():
        if key not in SETTINGS:
            raise ConfigError(f"{str(key)[:80]}: unknown setting in {source}")
        merged[key] = _coerce(key, value, source)
    _check(merged)
    return Config(merged)


def require_files(config, *keys):
    """Stop with a ConfigError unless each named setting is an existing file."""
    for key in keys:
        path = getattr(config, key)
        if path and os.path.isdir(path):
            raise ConfigError(f"{key}: {path!r} is a folder, expected a file")
        if not path or not os.path.isfile(path):
            raise ConfigError(f"{key}: file {path!r} not found")


def require_dirs(config, *keys):
    """Stop with a ConfigError unless each named setting is an existing folder."""
    for key in keys:
        path = getattr(config, key)
        if not path or not os.path.isdir(path):
            raise ConfigError(f"{key}: folder {path!r} not found")


def format_config(config):
    """The settings as aligned 'key: value' lines for the start of a log."""
    width = max(len(key) for key in config.as_dict())
    return "\n".join(f"{key:<{width}} : {value}" for key, value in config.as_dict().items())
