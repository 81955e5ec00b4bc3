/**
 * MindSpore-free helpers of the fixed-length inference program (see inc/utils.h).
 */
#include "inc/utils.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <system_error>

namespace fs = std::filesystem;

namespace ecapa_infer {
namespace {

constexpr std::size_t kFloatBytes = sizeof(float);
static_assert(sizeof(float) == 4, "the .bin format stores 4-byte float32 values");

const char *const kOptionNames[] = {"mindir_path", "input_path", "result_path", "device_id", "time_file"};

bool IsKnownOption(const std::string &name) {
  return std::find(std::begin(kOptionNames), std::end(kOptionNames), name) != std::end(kOptionNames);
}

uint32_t ParseDeviceId(const std::string &text) {
  const bool all_digits = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
  if (!all_digits || text.size() > 10) {
    throw UsageError("--device_id must be a non-negative integer, got '" + text + "'");
  }
  const unsigned long long value = std::stoull(text);
  if (value > std::numeric_limits<uint32_t>::max()) {
    throw UsageError("--device_id is out of range: " + text);
  }
  return static_cast<uint32_t>(value);
}

/** Splits `--name=value` / `--name value` arguments into a name -> value map. */
std::map<std::string, std::string> CollectOptions(const std::vector<std::string> &args, bool *show_help) {
  std::map<std::string, std::string> values;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string &arg = args[i];
    if (arg == "--help" || arg == "-h") {
      *show_help = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      throw UsageError("unexpected argument '" + arg + "'");
    }
    const std::size_t eq = arg.find('=');
    const std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    if (!IsKnownOption(name)) {
      throw UsageError("unknown option '--" + name + "'");
    }
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
      value = args[++i];
    }
    if (value.empty()) {
      throw UsageError("option '--" + name + "' needs a value");
    }
    if (!values.emplace(name, value).second) {
      throw UsageError("option '--" + name + "' is given more than once");
    }
  }
  return values;
}

}  // namespace

std::string Usage(const std::string &program) {
  std::ostringstream out;
  out << "usage: " << program << " --mindir_path=FILE --input_path=DIR [--result_path=DIR]"
      << " [--device_id=N] [--time_file=FILE]\n"
      << "  --mindir_path  exported model (MindIR), input (1, length, 80) float32\n"
      << "  --input_path   folder of <utt>.bin feature files (raw float32, 1*length*80 values)\n"
      << "  --result_path  folder for <utt>.bin embeddings (raw float32), default ./result_Files\n"
      << "  --device_id    Ascend device index, default 0\n"
      << "  --time_file    timing report, default <result_path>/../time_Result/test_perform_static.txt\n";
  return out.str();
}

InferOptions ParseArgs(const std::vector<std::string> &args) {
  InferOptions options;
  const auto values = CollectOptions(args, &options.show_help);
  if (options.show_help) {
    return options;
  }
  for (const char *required : {"mindir_path", "input_path"}) {
    if (values.count(required) == 0) {
      throw UsageError(std::string("missing required option '--") + required + "'");
    }
  }
  options.mindir_path = values.at("mindir_path");
  options.input_path = values.at("input_path");
  if (values.count("result_path") != 0) {
    options.result_path = values.at("result_path");
  }
  if (values.count("device_id") != 0) {
    options.device_id = ParseDeviceId(values.at("device_id"));
  }
  options.time_file =
    values.count("time_file") != 0 ? values.at("time_file") : DefaultTimeFile(options.result_path);
  return options;
}

std::string DefaultTimeFile(const std::string &result_dir) {
  return (fs::path(result_dir) / ".." / "time_Result" / "test_perform_static.txt").lexically_normal().string();
}

std::vector<std::string> ListBinFiles(const std::string &dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    throw std::runtime_error("input folder " + dir + " does not exist or is not a folder");
  }
  std::vector<fs::path> found;
  for (const auto &entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".bin" && fs::is_regular_file(entry.status())) {
      found.push_back(entry.path());
    }
  }
  if (found.empty()) {
    throw std::runtime_error("input folder " + dir + " holds no .bin file");
  }
  std::sort(found.begin(), found.end(),
            [](const fs::path &a, const fs::path &b) { return a.filename().string() < b.filename().string(); });
  std::vector<std::string> files;
  files.reserve(found.size());
  for (const auto &path : found) {
    files.push_back(path.string());
  }
  return files;
}

void EnsureDirectory(const std::string &dir) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (!fs::is_directory(dir)) {
    throw std::runtime_error("cannot create folder " + dir +
                             (error ? ": " + error.message() : ": a file of that name is in the way"));
  }
}

std::size_t ElementCount(const std::vector<int64_t> &shape) {
  std::size_t count = 1;
  for (const int64_t dim : shape) {
    if (dim < 0) {
      throw std::runtime_error("shape " + ShapeToString(shape) + " has an unfixed dimension");
    }
    const auto size = static_cast<std::size_t>(dim);
    if (size != 0 && count > std::numeric_limits<std::size_t>::max() / size) {
      throw std::runtime_error("shape " + ShapeToString(shape) + " has too many elements");
    }
    count *= size;
  }
  return count;
}

std::string ShapeToString(const std::vector<int64_t> &shape) {
  std::ostringstream out;
  out << "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    out << (i == 0 ? "" : ", ") << shape[i];
  }
  out << ")";
  return out.str();
}

std::size_t CountFloats(const std::string &path) {
  std::error_code error;
  const std::uintmax_t bytes = fs::file_size(path, error);
  if (error) {
    throw std::runtime_error("cannot read " + path + ": " + error.message());
  }
  if (bytes % kFloatBytes != 0) {
    throw std::runtime_error(path + ": size " + std::to_string(bytes) +
                             " bytes is not a whole number of float32 values");
  }
  return static_cast<std::size_t>(bytes / kFloatBytes);
}

void CheckFloatFileSize(const std::string &path, std::size_t expected_count) {
  std::error_code error;
  const std::uintmax_t bytes = fs::file_size(path, error);
  if (error) {
    throw std::runtime_error("cannot read " + path + ": " + error.message());
  }
  const std::uintmax_t expected_bytes = static_cast<std::uintmax_t>(expected_count) * kFloatBytes;
  if (bytes != expected_bytes) {
    throw std::runtime_error(path + ": expected " + std::to_string(expected_count) + " float32 values (" +
                             std::to_string(expected_bytes) + " bytes) but the file has " + std::to_string(bytes) +
                             " bytes");
  }
}

std::vector<float> ReadFloatFile(const std::string &path, std::size_t expected_count) {
  CheckFloatFileSize(path, expected_count);
  const auto expected_bytes = static_cast<std::streamsize>(expected_count * kFloatBytes);
  std::vector<float> values(expected_count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char *>(values.data()), expected_bytes);
  if (!in || in.gcount() != expected_bytes) {
    throw std::runtime_error("cannot read " + path + ": read failed");
  }
  return values;
}

void WriteFloatFile(const std::string &path, const float *data, std::size_t count) {
  const std::string partial = path + ".tmp";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    if (!out) {
      throw std::runtime_error("cannot write " + path + ": cannot open " + partial);
    }
    out.write(reinterpret_cast<const char *>(data), static_cast<std::streamsize>(count * kFloatBytes));
    out.close();
    if (!out) {
      std::remove(partial.c_str());
      throw std::runtime_error("cannot write " + path + ": write failed");
    }
  }
  std::error_code error;
  fs::rename(partial, path, error);
  if (error) {
    std::remove(partial.c_str());
    throw std::runtime_error("cannot write " + path + ": " + error.message());
  }
}

std::string OutputPathFor(const std::string &input_file, const std::string &result_dir) {
  const fs::path name = fs::path(input_file).filename();
  if (name.empty()) {
    throw std::runtime_error("input path " + input_file + " has no file name");
  }
  return (fs::path(result_dir) / name).string();
}

std::string FormatTiming(std::size_t utterances, double total_ms) {
  const double average_ms = utterances == 0 ? 0.0 : total_ms / static_cast<double>(utterances);
  char line[160];
  std::snprintf(line, sizeof(line),
                "ECAPA-TDNN inference cost average time: %.3f ms of infer_count %zu (total %.3f ms)\n", average_ms,
                utterances, total_ms);
  return line;
}

void WriteTimingReport(const std::string &path, std::size_t utterances, double total_ms) {
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    EnsureDirectory(parent.string());
  }
  std::ofstream out(path, std::ios::trunc);
  out << FormatTiming(utterances, total_ms);
  out.close();
  if (!out) {
    throw std::runtime_error("cannot write timing report " + path);
  }
}

}  // namespace ecapa_infer
