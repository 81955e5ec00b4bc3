/**
 * Fixed-length ECAPA-TDNN inference on Ascend 310.
 *
 * Loads the exported MindIR (input (1, length, 80) float32 log-mel features), runs it once per
 * <utt>.bin file of --input_path (sorted by name) and writes each embedding (emb_size float32,
 * 192 by default) to <result_path>/<utt>.bin. The average model time per utterance goes to the
 * timing report (--time_file).
 */
#include <chrono>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/types.h"
#include "inc/utils.h"

namespace {

using ecapa_infer::InferOptions;

void Check(const mindspore::Status &status, const std::string &what) {
  if (status != mindspore::kSuccess) {
    throw std::runtime_error(what + ": " + status.ToString());
  }
}

std::shared_ptr<mindspore::Context> AscendContext(uint32_t device_id) {
  auto context = std::make_shared<mindspore::Context>();
  auto device = std::make_shared<mindspore::AscendDeviceInfo>();
  device->SetDeviceID(device_id);
  context->MutableDeviceInfo().push_back(device);
  return context;
}

/** The single float32 input that the exported network must have. */
mindspore::MSTensor ModelInput(mindspore::Model *model, const std::string &mindir_path) {
  const std::vector<mindspore::MSTensor> inputs = model->GetInputs();
  if (inputs.size() != 1) {
    throw std::runtime_error(mindir_path + ": expected a model with 1 input, found " + std::to_string(inputs.size()));
  }
  if (inputs[0].DataType() != mindspore::DataType::kNumberTypeFloat32) {
    throw std::runtime_error(mindir_path + ": the model input is not float32");
  }
  return inputs[0];
}

/** Number of float32 values per feature file, checked against every file before any inference. */
std::size_t CheckFeatureFiles(const mindspore::MSTensor &input, const std::vector<std::string> &files,
                              const std::string &mindir_path) {
  const std::vector<int64_t> &shape = input.Shape();
  const std::string shape_note = " (model input shape " + ecapa_infer::ShapeToString(shape) + ")";
  std::size_t expected = 0;
  try {
    expected = ecapa_infer::ElementCount(shape);
  } catch (const std::runtime_error &error) {
    throw std::runtime_error(mindir_path + ": " + error.what() + "; export the model with a fixed length");
  }
  for (const std::string &file : files) {
    try {
      ecapa_infer::CheckFloatFileSize(file, expected);
    } catch (const std::runtime_error &error) {
      throw std::runtime_error(error.what() + shape_note);
    }
  }
  return expected;
}

/** Runs the model on one feature file and writes its embedding; returns the model time in ms. */
double InferOne(mindspore::Model *model, const mindspore::MSTensor &input, std::size_t input_count,
                const std::string &feature_file, const std::string &result_path) {
  const std::vector<float> features = ecapa_infer::ReadFloatFile(feature_file, input_count);
  const std::vector<mindspore::MSTensor> batch = {
    mindspore::MSTensor(input.Name(), mindspore::DataType::kNumberTypeFloat32, input.Shape(), features.data(),
                        features.size() * sizeof(float))};
  std::vector<mindspore::MSTensor> outputs;
  const auto start = std::chrono::steady_clock::now();
  Check(model->Predict(batch, &outputs), "inference failed on " + feature_file);
  const auto stop = std::chrono::steady_clock::now();
  if (outputs.empty() || outputs[0].DataType() != mindspore::DataType::kNumberTypeFloat32) {
    throw std::runtime_error("inference on " + feature_file + " returned no float32 output");
  }
  const std::shared_ptr<const void> embedding = outputs[0].Data();
  ecapa_infer::WriteFloatFile(ecapa_infer::OutputPathFor(feature_file, result_path),
                              static_cast<const float *>(embedding.get()),
                              static_cast<std::size_t>(outputs[0].ElementNum()));
  return std::chrono::duration<double, std::milli>(stop - start).count();
}

void Run(const InferOptions &options) {
  const std::vector<std::string> files = ecapa_infer::ListBinFiles(options.input_path);
  ecapa_infer::EnsureDirectory(options.result_path);

  mindspore::Graph graph;
  Check(mindspore::Serialization::Load(options.mindir_path, mindspore::ModelType::kMindIR, &graph),
        "cannot load MindIR " + options.mindir_path);
  mindspore::Model model;
  Check(model.Build(mindspore::GraphCell(graph), AscendContext(options.device_id)),
        "cannot build " + options.mindir_path + " on Ascend device " + std::to_string(options.device_id));
  const mindspore::MSTensor input = ModelInput(&model, options.mindir_path);
  const std::size_t input_count = CheckFeatureFiles(input, files, options.mindir_path);
  std::cout << "model input " << ecapa_infer::ShapeToString(input.Shape()) << ", " << files.size()
            << " utterances from " << options.input_path << std::endl;

  double total_ms = 0.0;
  for (const std::string &file : files) {
    total_ms += InferOne(&model, input, input_count, file, options.result_path);
  }
  ecapa_infer::WriteTimingReport(options.time_file, files.size(), total_ms);
  std::cout << ecapa_infer::FormatTiming(files.size(), total_ms) << "embeddings in " << options.result_path
            << ", timing in " << options.time_file << std::endl;
}

}  // namespace

int main(int argc, char **argv) {
  const std::string program = argc > 0 ? argv[0] : "main";
  InferOptions options;
  try {
    options = ecapa_infer::ParseArgs(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const ecapa_infer::UsageError &error) {
    std::cerr << "error: " << error.what() << "\n" << ecapa_infer::Usage(program);
    return 2;
  }
  if (options.show_help) {
    std::cout << ecapa_infer::Usage(program);
    return 0;
  }
  try {
    Run(options);
  } catch (const std::exception &error) {
    std::cerr << "error: " << error.what() << std::endl;
    return 1;
  }
  return 0;
}
