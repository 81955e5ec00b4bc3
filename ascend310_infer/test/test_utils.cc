/**
 * Checks of the MindSpore-free helpers in src/utils.cc.
 *
 *   test_utils                       run every check; exit status 0 only if all pass
 *   test_utils --dump FILE COUNT     print the COUNT float32 values of FILE, one per line (%.9g)
 *   test_utils --copy IN OUT COUNT   read IN (COUNT float32 values) and write them to OUT
 *
 * The two file modes let a Python test check the byte format from the other side.
 */
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "inc/utils.h"

namespace fs = std::filesystem;
using ecapa_infer::InferOptions;
using ecapa_infer::UsageError;

namespace {

int g_checks = 0;
int g_failures = 0;

void Record(bool ok, const std::string &what, int line) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::cerr << "FAILED (line " << line << "): " << what << "\n";
  }
}

#define CHECK(cond) Record((cond), #cond, __LINE__)
#define CHECK_EQ(a, b) Record((a) == (b), std::string(#a " == " #b), __LINE__)

/** Passes if `action` throws an exception of type E whose message contains `needle`. */
template <typename E>
void CheckThrows(const std::function<void()> &action, const std::string &needle, int line) {
  try {
    action();
  } catch (const E &error) {
    const std::string message = error.what();
    Record(message.find(needle) != std::string::npos, "message '" + message + "' contains '" + needle + "'", line);
    return;
  } catch (const std::exception &error) {
    Record(false, std::string("wrong exception type: ") + error.what(), line);
    return;
  }
  Record(false, "expected an exception mentioning '" + needle + "'", line);
}

#define CHECK_THROWS(type, action, needle) CheckThrows<type>([&]() { action; }, (needle), __LINE__)

void Touch(const fs::path &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string ReadText(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/** A fresh empty folder under the system temporary folder, removed by the destructor. */
class TempDir {
 public:
  TempDir() {
    std::random_device seed;
    path_ = fs::temp_directory_path() / ("ecapa_infer_test_" + std::to_string(seed()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path &path() const { return path_; }

 private:
  fs::path path_;
};

void TestParseArgs() {
  const InferOptions equals = ecapa_infer::ParseArgs(
    {"--mindir_path=m.mindir", "--input_path=feat", "--result_path=res", "--device_id=3", "--time_file=t.txt"});
  CHECK_EQ(equals.mindir_path, "m.mindir");
  CHECK_EQ(equals.input_path, "feat");
  CHECK_EQ(equals.result_path, "res");
  CHECK_EQ(equals.device_id, 3u);
  CHECK_EQ(equals.time_file, "t.txt");
  CHECK(!equals.show_help);

  const InferOptions spaced = ecapa_infer::ParseArgs({"--input_path", "feat", "--mindir_path", "m.mindir"});
  CHECK_EQ(spaced.mindir_path, "m.mindir");
  CHECK_EQ(spaced.input_path, "feat");
  CHECK_EQ(spaced.result_path, "./result_Files");
  CHECK_EQ(spaced.device_id, 0u);
  CHECK_EQ(spaced.time_file, "time_Result/test_perform_static.txt");

  const InferOptions derived = ecapa_infer::ParseArgs({"--mindir_path=m", "--input_path=f", "--result_path=a/b"});
  CHECK_EQ(derived.time_file, "a/time_Result/test_perform_static.txt");
  CHECK_EQ(ecapa_infer::ParseArgs({"--device_id=4294967295", "--mindir_path=m", "--input_path=f"}).device_id,
           4294967295u);
  CHECK(ecapa_infer::ParseArgs({"--help"}).show_help);
  CHECK(ecapa_infer::ParseArgs({"-h"}).show_help);

  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--mindir_path=m", "--input_path=f", "--batch=2"}),
               "unknown option '--batch'");
  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--mindir_path=m", "--input_path"}),
               "option '--input_path' needs a value");
  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--mindir_path=", "--input_path=f"}),
               "option '--mindir_path' needs a value");
  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--mindir_path", "--input_path=f"}),
               "option '--mindir_path' needs a value");
  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--input_path=f"}), "missing required option '--mindir_path'");
  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--mindir_path=m"}), "missing required option '--input_path'");
  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--mindir_path=m", "--input_path=f", "--input_path=g"}),
               "'--input_path' is given more than once");
  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--mindir_path=m", "--input_path=f", "stray"}),
               "unexpected argument 'stray'");
  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--mindir_path=m", "--input_path=f", "--device_id=-1"}),
               "non-negative integer, got '-1'");
  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--mindir_path=m", "--input_path=f", "--device_id=1a"}),
               "got '1a'");
  CHECK_THROWS(UsageError, ecapa_infer::ParseArgs({"--mindir_path=m", "--input_path=f", "--device_id=4294967296"}),
               "out of range");

  const std::string usage = ecapa_infer::Usage("prog");
  CHECK(usage.rfind("usage: prog ", 0) == 0);
  for (const char *option : {"--mindir_path", "--input_path", "--result_path", "--device_id", "--time_file"}) {
    CHECK(usage.find(option) != std::string::npos);
  }
}

void TestDefaultTimeFile() {
  CHECK_EQ(ecapa_infer::DefaultTimeFile("out/result_Files"), "out/time_Result/test_perform_static.txt");
  CHECK_EQ(ecapa_infer::DefaultTimeFile("out/result_Files/"), "out/time_Result/test_perform_static.txt");
  CHECK_EQ(ecapa_infer::DefaultTimeFile("/data/run/result"), "/data/run/time_Result/test_perform_static.txt");
  CHECK_EQ(ecapa_infer::DefaultTimeFile("."), "../time_Result/test_perform_static.txt");
}

void TestListBinFiles() {
  TempDir dir;
  const fs::path feat = dir.path() / "feat";
  fs::create_directories(feat / "nested.bin");  // a folder, not a feature file
  for (const char *name : {"id2_b.bin", "id10_a.bin", "Z.bin", "notes.txt", "x.bin.tmp"}) {
    Touch(feat / name, "abcd");
  }
  const std::vector<std::string> files = ecapa_infer::ListBinFiles(feat.string());
  const std::vector<std::string> expected = {(feat / "Z.bin").string(), (feat / "id10_a.bin").string(),
                                             (feat / "id2_b.bin").string()};
  CHECK(files == expected);

  const fs::path empty = dir.path() / "empty";
  fs::create_directories(empty);
  Touch(empty / "readme.txt", "x");
  CHECK_THROWS(std::runtime_error, ecapa_infer::ListBinFiles(empty.string()), empty.string() + " holds no .bin file");
  const std::string missing = (dir.path() / "missing").string();
  CHECK_THROWS(std::runtime_error, ecapa_infer::ListBinFiles(missing), missing + " does not exist");
  const std::string file = (feat / "Z.bin").string();
  CHECK_THROWS(std::runtime_error, ecapa_infer::ListBinFiles(file), file + " does not exist or is not a folder");
}

void TestEnsureDirectory() {
  TempDir dir;
  const fs::path nested = dir.path() / "a" / "b";
  ecapa_infer::EnsureDirectory(nested.string());
  CHECK(fs::is_directory(nested));
  ecapa_infer::EnsureDirectory(nested.string());  // already there: fine
  Touch(dir.path() / "plain", "x");
  const std::string blocked = (dir.path() / "plain").string();
  CHECK_THROWS(std::runtime_error, ecapa_infer::EnsureDirectory(blocked), "cannot create folder " + blocked);
}

void TestShapes() {
  CHECK_EQ(ecapa_infer::ElementCount({1, 1199, 80}), static_cast<std::size_t>(95920));
  CHECK_EQ(ecapa_infer::ElementCount({}), static_cast<std::size_t>(1));
  CHECK_EQ(ecapa_infer::ElementCount({4, 0, 7}), static_cast<std::size_t>(0));
  CHECK_EQ(ecapa_infer::ShapeToString({1, 1199, 80}), "(1, 1199, 80)");
  CHECK_EQ(ecapa_infer::ShapeToString({}), "()");
  CHECK_THROWS(std::runtime_error, ecapa_infer::ElementCount({1, -1, 80}),
               "shape (1, -1, 80) has an unfixed dimension");
  const int64_t huge = std::numeric_limits<int64_t>::max();
  CHECK_THROWS(std::runtime_error, ecapa_infer::ElementCount({huge, huge}), "too many elements");
}

void TestFloatFiles() {
  TempDir dir;
  const std::vector<float> values = {0.0f, -1.5f, 3.25e-41f, 1e30f, std::numeric_limits<float>::infinity(),
                                     -0.0f, 123456.789f};
  const std::string path = (dir.path() / "utt.bin").string();
  ecapa_infer::WriteFloatFile(path, values.data(), values.size());
  CHECK_EQ(fs::file_size(path), static_cast<std::uintmax_t>(values.size() * 4));
  CHECK(!fs::exists(path + ".tmp"));
  CHECK_EQ(ecapa_infer::CountFloats(path), values.size());
  const std::vector<float> back = ecapa_infer::ReadFloatFile(path, values.size());
  CHECK(back.size() == values.size() && std::equal(values.begin(), values.end(), back.begin(), [](float a, float b) {
          return std::memcmp(&a, &b, sizeof(float)) == 0;
        }));

  // Byte layout: 1.0f is 00 00 80 3f in little-endian IEEE-754.
  const float one = 1.0f;
  const std::string one_path = (dir.path() / "one.bin").string();
  ecapa_infer::WriteFloatFile(one_path, &one, 1);
  CHECK_EQ(ReadText(one_path), std::string("\x00\x00\x80\x3f", 4));

  // Overwriting replaces the old content entirely.
  ecapa_infer::WriteFloatFile(path, values.data(), 2);
  CHECK_EQ(fs::file_size(path), static_cast<std::uintmax_t>(8));

  CHECK_THROWS(std::runtime_error, ecapa_infer::ReadFloatFile(path, 3),
               path + ": expected 3 float32 values (12 bytes) but the file has 8 bytes");
  CHECK_THROWS(std::runtime_error, ecapa_infer::ReadFloatFile(path, 1),
               path + ": expected 1 float32 values (4 bytes) but the file has 8 bytes");
  ecapa_infer::CheckFloatFileSize(path, 2);
  CHECK_THROWS(std::runtime_error, ecapa_infer::CheckFloatFileSize(path, 95920),
               path + ": expected 95920 float32 values (383680 bytes) but the file has 8 bytes");
  const std::string missing = (dir.path() / "missing.bin").string();
  CHECK_THROWS(std::runtime_error, ecapa_infer::ReadFloatFile(missing, 1), "cannot read " + missing);
  CHECK_THROWS(std::runtime_error, ecapa_infer::CheckFloatFileSize(missing, 1), "cannot read " + missing);
  const std::string odd = (dir.path() / "odd.bin").string();
  Touch(odd, "1234567");
  CHECK_THROWS(std::runtime_error, ecapa_infer::CountFloats(odd), odd + ": size 7 bytes is not a whole number");
  const std::string unwritable = (dir.path() / "no_such_dir" / "x.bin").string();
  CHECK_THROWS(std::runtime_error, ecapa_infer::WriteFloatFile(unwritable, values.data(), 1),
               "cannot write " + unwritable);
}

void TestOutputPath() {
  CHECK_EQ(ecapa_infer::OutputPathFor("/data/pre/feat/id10270_5r0dWxy17C8_00001.bin", "result_Files"),
           "result_Files/id10270_5r0dWxy17C8_00001.bin");
  CHECK_EQ(ecapa_infer::OutputPathFor("a.bin", "/abs/res/"), "/abs/res/a.bin");
  CHECK_THROWS(std::runtime_error, ecapa_infer::OutputPathFor("feat/", "res"), "input path feat/ has no file name");
}

void TestTiming() {
  CHECK_EQ(ecapa_infer::FormatTiming(4, 10.0),
           "ECAPA-TDNN inference cost average time: 2.500 ms of infer_count 4 (total 10.000 ms)\n");
  CHECK_EQ(ecapa_infer::FormatTiming(0, 0.0),
           "ECAPA-TDNN inference cost average time: 0.000 ms of infer_count 0 (total 0.000 ms)\n");
  TempDir dir;
  const fs::path report = dir.path() / "time_Result" / "test_perform_static.txt";
  ecapa_infer::WriteTimingReport(report.string(), 3, 4.5);
  CHECK_EQ(ReadText(report), ecapa_infer::FormatTiming(3, 4.5));
  const std::string blocked = (dir.path() / "time_Result" / "test_perform_static.txt" / "x.txt").string();
  CHECK_THROWS(std::runtime_error, ecapa_infer::WriteTimingReport(blocked, 1, 1.0), "cannot create folder");
}

int RunChecks() {
  TestParseArgs();
  TestDefaultTimeFile();
  TestListBinFiles();
  TestEnsureDirectory();
  TestShapes();
  TestFloatFiles();
  TestOutputPath();
  TestTiming();
  std::cout << "test_utils: " << (g_checks - g_failures) << " checks passed, " << g_failures << " failed"
            << std::endl;
  return g_failures == 0 ? 0 : 1;
}

std::size_t ParseCount(const std::string &text) {
  std::size_t used = 0;
  const unsigned long long count = std::stoull(text, &used);
  if (used != text.size()) {
    throw std::invalid_argument("bad count '" + text + "'");
  }
  return static_cast<std::size_t>(count);
}

int RunFileMode(const std::vector<std::string> &args) {
  if (args.size() == 3 && args[0] == "--dump") {
    std::printf("count %zu\n", ecapa_infer::CountFloats(args[1]));
    for (const float value : ecapa_infer::ReadFloatFile(args[1], ParseCount(args[2]))) {
      std::printf("%.9g\n", static_cast<double>(value));
    }
    return 0;
  }
  if (args.size() == 4 && args[0] == "--copy") {
    const std::vector<float> values = ecapa_infer::ReadFloatFile(args[1], ParseCount(args[3]));
    ecapa_infer::WriteFloatFile(args[2], values.data(), values.size());
    return 0;
  }
  std::cerr << "usage: test_utils [--dump FILE COUNT | --copy IN OUT COUNT]\n";
  return 2;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc == 1) {
    return RunChecks();
  }
  try {
    return RunFileMode(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception &error) {
    std::cerr << "error: " << error.what() << std::endl;
    return 1;
  }
}
