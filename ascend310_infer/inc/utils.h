/**
 * Helpers of the fixed-length ECAPA-TDNN inference program that do not depend on MindSpore:
 * command-line parsing, listing of feature files, raw float32 file I/O, output naming and the
 * timing report. Every failure is reported as an exception whose message names the file or
 * option concerned.
 */
#ifndef ECAPA_ASCEND310_INFER_INC_UTILS_H_
#define ECAPA_ASCEND310_INFER_INC_UTILS_H_

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ecapa_infer {

/** Raised for a bad command line; the caller prints the message and the usage text. */
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string &message) : std::runtime_error(message) {}
};

/** Settings of one inference run. */
struct InferOptions {
  std::string mindir_path;                   // exported model, e.g. ecapatdnn.mindir
  std::string input_path;                    // folder of <utt>.bin feature files
  std::string result_path = "./result_Files";  // folder that receives <utt>.bin embeddings
  std::string time_file;                     // timing report path (see DefaultTimeFile)
  uint32_t device_id = 0;                    // Ascend device index
  bool show_help = false;                    // --help was given: print usage and stop
};

/** Usage text listing every option, with `program` as the command name. */
std::string Usage(const std::string &program);

/**
 * Parses the arguments that follow the program name. Options take the forms `--name=value` and
 * `--name value`. --mindir_path and --input_path are required; --result_path defaults to
 * ./result_Files, --device_id to 0 and --time_file to DefaultTimeFile(result_path).
 * Throws UsageError for an unknown option, a missing or empty value, an option given twice, a
 * bad device id or a missing required option.
 */
InferOptions ParseArgs(const std::vector<std::string> &args);

/** `<result_dir>/../time_Result/test_perform_static.txt`, lexically normalised. */
std::string DefaultTimeFile(const std::string &result_dir);

/**
 * Full paths of the regular files ending in ".bin" directly inside `dir`, sorted by file name
 * (byte order, as Python's sorted() orders str names). Throws if `dir` is not a directory or
 * holds no .bin file.
 */
std::vector<std::string> ListBinFiles(const std::string &dir);

/** Creates `dir` and its parents if needed; throws if it exists but is not a directory. */
void EnsureDirectory(const std::string &dir);

/**
 * Number of elements of a tensor of shape `shape`, e.g. (1, 1199, 80) -> 95920. Throws if a
 * dimension is negative (an unfixed dimension) or the product overflows.
 */
std::size_t ElementCount(const std::vector<int64_t> &shape);

/** Shape written as "(1, 1199, 80)". */
std::string ShapeToString(const std::vector<int64_t> &shape);

/**
 * Checks that a raw float32 file holds exactly `expected_count` values (4 * expected_count bytes).
 * Throws, naming the file, if it cannot be read or has another size.
 */
void CheckFloatFileSize(const std::string &path, std::size_t expected_count);

/**
 * Reads a raw little-endian float32 file that must hold exactly `expected_count` values; throws
 * like CheckFloatFileSize, or naming the file if reading fails.
 */
std::vector<float> ReadFloatFile(const std::string &path, std::size_t expected_count);

/** Number of float32 values in a raw file; throws if its size is not a multiple of 4 bytes. */
std::size_t CountFloats(const std::string &path);

/**
 * Writes `count` float32 values as raw bytes. The data go to `<path>.tmp` first and are renamed
 * into place, so a reader never sees a half-written file. Throws, naming the file, on failure.
 */
void WriteFloatFile(const std::string &path, const float *data, std::size_t count);

/** `<result_dir>/<file name of input_file>`: an embedding keeps the name of its feature file. */
std::string OutputPathFor(const std::string &input_file, const std::string &result_dir);

/** One-line timing summary: utterance count, total and average milliseconds per utterance. */
std::string FormatTiming(std::size_t utterances, double total_ms);

/** Writes FormatTiming(...) to `path`, creating its folder; throws, naming the file, on failure. */
void WriteTimingReport(const std::string &path, std::size_t utterances, double total_ms);

}  // namespace ecapa_infer

#endif  // ECAPA_ASCEND310_INFER_INC_UTILS_H_
